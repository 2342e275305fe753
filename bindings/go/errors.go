package kvmc

import "fmt"

// Code is a kvmc_error code (kvmc.h).
type Code int

// The codes libkvmc returns.
const (
	CodeOK           Code = 0
	CodeInvalid      Code = -1 // an argument or configuration value is invalid
	CodeNoMemory     Code = -2 // out of host memory
	CodeIO           Code = -3 // a host file could not be opened or read
	CodeKVM          Code = -4 // /dev/kvm is missing or an ioctl failed
	CodeFormat       Code = -5 // a kernel or initrd image is malformed
	CodeState        Code = -6 // not valid in the VM's current state
	CodeBusy         Code = -7 // a bus range overlaps, or a disk image is in use
	CodeTimedOut     Code = -8 // a wait ran out of time
	CodeNotSupported Code = -9 // the host or the image lacks a needed feature
)

var codeNames = map[Code]string{
	CodeOK: "OK", CodeInvalid: "EINVAL", CodeNoMemory: "ENOMEM", CodeIO: "EIO",
	CodeKVM: "EKVM", CodeFormat: "EFORMAT", CodeState: "ESTATE", CodeBusy: "EBUSY",
	CodeTimedOut: "ETIMEDOUT", CodeNotSupported: "ENOTSUP",
}

func (c Code) String() string {
	if n, ok := codeNames[c]; ok {
		return n
	}
	return fmt.Sprintf("Code(%d)", int(c))
}

// Error is a failed libkvmc call: Code is the kvmc_error, Msg kvmc's one-line
// message. Test for a kind of failure with errors.Is against the sentinels
// below (ErrInvalid, ErrState...), which match any Error of their code.
type Error struct {
	Code Code
	Msg  string
}

func (e *Error) Error() string {
	if e.Msg == "" {
		return "kvmc: " + e.Code.String()
	}
	return "kvmc: " + e.Msg
}

// Is reports whether target is the sentinel of e's code (a sentinel has no
// message), so errors.Is(err, kvmc.ErrState) holds for every state error.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Msg == "" && t.Code == e.Code
}

// Sentinels, one per code, for errors.Is.
var (
	ErrInvalid      = &Error{Code: CodeInvalid}
	ErrNoMemory     = &Error{Code: CodeNoMemory}
	ErrIO           = &Error{Code: CodeIO}
	ErrKVM          = &Error{Code: CodeKVM}
	ErrFormat       = &Error{Code: CodeFormat}
	ErrState        = &Error{Code: CodeState}
	ErrBusy         = &Error{Code: CodeBusy}
	ErrTimedOut     = &Error{Code: CodeTimedOut}
	ErrNotSupported = &Error{Code: CodeNotSupported}
)

// Errors of the binding itself; each is also an ErrState.
var (
	// ErrClosed is returned by calls on a closed VM.
	ErrClosed = &Error{Code: CodeState, Msg: "the VM is closed"}
	// ErrNotStarted is returned by Wait on a VM that was never started.
	ErrNotStarted = &Error{Code: CodeState, Msg: "the VM was never started"}
	// ErrInCallback is returned by Close, Wait and Pause called from a
	// callback of the same VM: they wait for the thread running it.
	ErrInCallback = &Error{Code: CodeState,
		Msg: "called from a callback of this VM, which it would wait for; call it after Wait returns"}
)

// CallbackError is returned by Wait when a device, console, connector or
// event callback panicked: the VM was stopped, Value is what was passed to
// panic and Stack where.
type CallbackError struct {
	Value any
	Stack []byte
}

func (e *CallbackError) Error() string {
	return fmt.Sprintf("kvmc: a callback panicked: %v", e.Value)
}

// Unwrap gives the panic value if it was an error.
func (e *CallbackError) Unwrap() error {
	err, _ := e.Value.(error)
	return err
}

func invalid(format string, args ...any) error {
	return &Error{Code: CodeInvalid, Msg: fmt.Sprintf(format, args...)}
}
