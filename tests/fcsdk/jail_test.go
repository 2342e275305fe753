package fcsdk

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	firecracker "github.com/firecracker-microvm/firecracker-go-sdk"
	models "github.com/firecracker-microvm/firecracker-go-sdk/client/models"
)

// jailRoot prepares a jail's root as a Firecracker jailer's user would: the
// kernel and a disk inside it, owned by the jail's user (nobody, when the
// test runs as root; the user itself otherwise).
func jailRoot(t *testing.T) string {
	root := filepath.Join(t.TempDir(), "root")
	if err := os.Mkdir(root, 0o755); err != nil {
		t.Fatal(err)
	}
	guest, err := os.ReadFile(need(t, "KVMC_TEST_GUEST_ELF"))
	if err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string][]byte{"guest": guest, "rootfs.img": make([]byte, 1<<20)} {
		if err := os.WriteFile(filepath.Join(root, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if os.Geteuid() == 0 {
		for _, p := range []string{root, filepath.Join(root, "guest"), filepath.Join(root, "rootfs.img")} {
			if err := os.Chown(p, 65534, 65534); err != nil {
				t.Fatal(err)
			}
		}
	}
	return root
}

// jailedChild is the process inside the jail: the started process stays
// outside, waits for it and forwards signals.
func jailedChild(t *testing.T, parent int) int {
	for i := 0; i < 500; i++ {
		b, _ := os.ReadFile(filepath.Join("/proc", itoa(parent), "task", itoa(parent), "children"))
		if f := strings.Fields(string(b)); len(f) == 1 {
			var pid int
			if err := json.Unmarshal([]byte(f[0]), &pid); err == nil {
				return pid
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("process %d has no jailed child", parent)
	return 0
}

func statusField(t *testing.T, pid int, field string) string {
	status, err := os.ReadFile(filepath.Join("/proc", itoa(pid), "status"))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			return strings.Join(strings.Fields(v), " ")
		}
	}
	t.Fatalf("no %s in process %d's status", field, pid)
	return ""
}

// Requests naming a path outside the jail are refused with Firecracker's
// 400 and a fault_message, and the VMM goes on: ".." anywhere, and an
// absolute path, which is the jail's, not the host's.
func TestJailRefusesPathsOutsideIt(t *testing.T) {
	root := jailRoot(t)
	cmd := exec.Command(need(t, "KVMC_FIRECRACKER"), "--jail", root, "--api-sock", "/api.sock",
		"--id", "hostile")
	var stderr syncBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cmd.Process.Kill()
		cmd.Wait()
	}()
	sock := filepath.Join(root, "api.sock")
	for i := 0; ; i++ {
		if _, err := os.Stat(sock); err == nil {
			break
		}
		if i > 500 {
			t.Fatalf("no API socket in the jail after 5 s; stderr:\n%s", stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	put := func(path, body string) (int, string) {
		resp, answer, err := raw(t, sock, "PUT "+path+" HTTP/1.1\r\nHost: localhost\r\n"+
			"Content-Type: application/json\r\nContent-Length: "+itoa(len(body))+"\r\n\r\n"+body)
		if err != nil {
			t.Fatalf("PUT %s: %v", path, err)
		}
		return resp.StatusCode, answer
	}
	for _, c := range []struct{ path, body, fault string }{
		{"/drives/rootfs", `{"drive_id":"rootfs","path_on_host":"../../../etc/passwd",` +
			`"is_root_device":true,"is_read_only":true}`, "has a '..' component"},
		{"/drives/rootfs", `{"drive_id":"rootfs","path_on_host":"/guest/../rootfs.img",` +
			`"is_root_device":true,"is_read_only":false}`, "has a '..' component"},
		{"/boot-source", `{"kernel_image_path":".."}`, "has a '..' component"},
		{"/logger", `{"log_path":"/../log"}`, "has a '..' component"},
		{"/snapshot/load", `{"snapshot_path":"a/../../b","mem_file_path":"m"}`,
			"has a '..' component"},
		// The host's /etc/passwd is not in the jail.
		{"/drives/rootfs", `{"drive_id":"rootfs","path_on_host":"/etc/passwd",` +
			`"is_root_device":true,"is_read_only":true}`, "cannot open /etc/passwd"},
	} {
		status, answer := put(c.path, c.body)
		if status != 400 || !strings.Contains(answer, `"fault_message"`) ||
			!strings.Contains(answer, c.fault) {
			t.Errorf("PUT %s %s: %d %s, want 400 with %q", c.path, c.body, status, answer, c.fault)
		}
	}
	// A name that merely contains two dots is a file name like any other.
	if status, answer := put("/boot-source", `{"kernel_image_path":"/guest..old"}`); status != 400 ||
		!strings.Contains(answer, "cannot open /guest..old") {
		t.Errorf("PUT /boot-source /guest..old: %d %s", status, answer)
	}
	if status, answer := put("/boot-source", `{"kernel_image_path":"/guest"}`); status != 204 {
		t.Fatalf("PUT /boot-source /guest (inside the jail): %d %s", status, answer)
	}
	alive(t, sock)

	// The process outside killed with SIGKILL takes the jailed one with it
	// (the kernel forgets the parent-death signal when the jail changes
	// the credentials; the jail sets it again).
	child := jailedChild(t, cmd.Process.Pid)
	cmd.Process.Kill()
	for i := 0; syscall.Kill(child, 0) == nil; i++ {
		if i > 200 {
			t.Fatalf("the jailed process %d outlived its parent's SIGKILL", child)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Command-line mistakes are one line and status 2, before anything is made.
func TestJailCommandLine(t *testing.T) {
	root := jailRoot(t)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--jail", root, "--jail-user", "0", "--api-sock", "/a"},
			"--jail-user 0: use UID or UID:GID, numbers other than 0"},
		{[]string{"--jail", root, "--jail-user", "1000:0", "--api-sock", "/a"},
			"--jail-user 1000:0: use UID or UID:GID"},
		{[]string{"--jail", root, "--jail-user", "x", "--api-sock", "/a"}, "--jail-user x: use UID"},
		{[]string{"--jail-user", "1000", "--api-sock", "/a"}, "--jail-user needs --jail"},
	} {
		cmd := exec.Command(need(t, "KVMC_FIRECRACKER"), c.args...)
		out, err := cmd.CombinedOutput()
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != 2 || !strings.Contains(string(out), c.want) ||
			strings.Count(string(out), "\n") != 1 {
			t.Errorf("%v: %v %q, want status 2 and one line with %q", c.args, err, out, c.want)
		}
	}
	// A DIR that is no directory, and a dev in it that is no directory.
	file := filepath.Join(root, "guest")
	out, err := exec.Command(need(t, "KVMC_FIRECRACKER"), "--jail", file, "--api-sock", "/a").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "--jail "+file) {
		t.Errorf("--jail on a file: %v %q", err, out)
	}
	if err := os.WriteFile(filepath.Join(root, "dev"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err = exec.Command(need(t, "KVMC_FIRECRACKER"), "--jail", root, "--api-sock", "/a").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "dev is not a directory") {
		t.Errorf("a dev file in the root: %v %q", err, out)
	}
	if entries, _ := os.ReadDir(root); len(entries) != 3 { // guest, rootfs.img, dev
		t.Errorf("the root after the refusals: %v", entries)
	}
}

// The SDK's flow, jailed: it is pointed at the socket inside the root and
// names the files as the jail sees them, as with Firecracker's jailer. The
// process inside runs as nobody with no capability, no_new_privs and
// seccomp, as PID 1 of its own namespace; StopVMM ends both with status 0
// and the root is left as it was given, but for the vsock's socket.
func TestJailSDKFlow(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	root := jailRoot(t)
	console, stderr := &syncBuffer{}, &syncBuffer{}
	cmd := firecracker.VMCommandBuilder{}.WithBin(need(t, "KVMC_FIRECRACKER")).
		WithArgs([]string{"--jail", root, "--api-sock", "/api.sock"}).
		WithStdout(console).WithStderr(stderr).Build(ctx)
	cfg := firecracker.Config{
		SocketPath:        filepath.Join(root, "api.sock"),
		KernelImagePath:   "/guest",
		KernelArgs:        "kvmc.test=kbd",
		Drives:            firecracker.NewDrivesBuilder("/rootfs.img").Build(),
		MachineCfg:        models.MachineConfiguration{VcpuCount: firecracker.Int64(1), MemSizeMib: firecracker.Int64(64)},
		VsockDevices:      []firecracker.VsockDevice{{Path: "/v.sock", CID: 3}},
		DisableValidation: true, // the paths are the jail's, not the host's
	}
	m := startMachine(t, ctx, cfg, cmd, stderr)
	defer m.StopVMM()
	waitFor(t, console, "kbd: waiting for ctrl-alt-del")
	if !strings.Contains(console.String(), "kbd: virtio devices: blk vsock") {
		t.Errorf("the guest's devices:\n%s", console.String())
	}
	if _, err := os.Stat(filepath.Join(root, "v.sock")); err != nil {
		t.Errorf("the vsock's socket, in the jail: %v", err)
	}

	parent, err := m.PID()
	if err != nil {
		t.Fatal(err)
	}
	child := jailedChild(t, parent)
	if ns := statusField(t, child, "NSpid"); !strings.HasSuffix(ns, " 1") {
		t.Errorf("the jailed process is not PID 1 of its namespace: NSpid %s", ns)
	}
	if os.Geteuid() == 0 {
		if uid := statusField(t, child, "Uid"); uid != "65534 65534 65534 65534" {
			t.Errorf("Uid %s, want nobody", uid)
		}
	}
	for field, want := range map[string]string{"CapEff": "0000000000000000",
		"CapPrm": "0000000000000000", "CapBnd": "0000000000000000", "NoNewPrivs": "1"} {
		if got := statusField(t, child, field); got != want {
			t.Errorf("%s %s, want %s", field, got, want)
		}
	}
	// The jail has a proc of its own, so the vCPU threads got their names.
	if names := threadNames(t, child); !strings.Contains(names, "fc_vcpu 0\n") {
		t.Errorf("thread names:\n%s", names)
	}
	for _, name := range []string{"fc_api", "fc_vcpu 0", "kvmc-io"} {
		if mode := seccompMode(t, child, name); mode != "2" {
			t.Errorf("thread %q: Seccomp %q, want 2", name, mode)
		}
	}
	root2, err := os.Readlink(filepath.Join("/proc", itoa(child), "root"))
	if err != nil || root2 != "/" { // its own mount namespace's root: the jail
		t.Errorf("root %q, %v", root2, err)
	}

	if err := m.StopVMM(); err != nil {
		t.Fatal(err)
	}
	if err := m.Wait(ctx); err != nil {
		t.Fatalf("Wait after StopVMM: %v\nstderr:\n%s", err, stderr.String())
	}
	for _, pid := range []int{parent, child} {
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("process %d still there: %v", pid, err)
		}
	}
	entries, _ := os.ReadDir(root)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if got := strings.Join(names, " "); got != "guest rootfs.img v.sock" {
		t.Errorf("the jail's root after the process: %q, want its files and the vsock socket", got)
	}
}
