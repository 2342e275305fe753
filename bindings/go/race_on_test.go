//go:build race

package kvmc

// The race detector keeps shadow memory and history for every goroutine and
// cgo thread, so resident memory is no measure of kvmc's under it.
const raceEnabled = true
