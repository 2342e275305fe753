package kvmc

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

var floodLine = regexp.MustCompile(`^flood line (\d+) (\.+)$`)

// floodNumbers: the numbers of the whole flood lines in text.
func floodNumbers(t *testing.T, text string) []int {
	t.Helper()
	lines := strings.Split(text, "\n")
	var out []int
	for _, line := range lines[1 : len(lines)-1] {
		m := floodLine.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		if len(m[2]) != 48 {
			t.Fatalf("a torn line: %q", line)
		}
		n, _ := strconv.Atoi(m[1])
		out = append(out, n)
	}
	return out
}

// The test guest counts; paused and saved, its VM closed, a VM restored
// from the files counts on from where it stopped.
func TestSnapshotThenRestoreContinuesTheCount(t *testing.T) {
	guest := testGuest(t)
	dir := filepath.Join(t.TempDir(), "snap")
	var before, after syncBuffer
	vm, err := NewVM(Config{Kernel: guest, Memory: 32 << 20, Cmdline: "kvmc.test=flood",
		Console: &before})
	if err != nil {
		t.Fatal(err)
	}
	if err := vm.Start(); err != nil {
		t.Fatal(err)
	}
	waitForText(t, &before, "flood line 300 ")
	if err := vm.Snapshot(dir); !errors.Is(err, ErrState) {
		t.Fatalf("Snapshot while running: %v, want ErrState", err)
	}
	if err := vm.Pause(); err != nil {
		t.Fatal(err)
	}
	if err := vm.Snapshot(dir); err != nil {
		t.Fatal(err)
	}
	vm.Close()

	if _, err := RestoreVM(dir, Config{Memory: 64 << 20}); !errors.Is(err, ErrInvalid) ||
		!strings.Contains(err.Error(), "32 MiB") {
		t.Fatalf("a VM of another size: %v, want ErrInvalid naming the sizes", err)
	}
	if _, err := RestoreVM(filepath.Join(dir, "missing"), Config{Memory: 32 << 20}); !errors.Is(err, ErrIO) {
		t.Fatalf("no snapshot there: %v, want ErrIO", err)
	}
	vm2, err := RestoreVM(dir, Config{Memory: 32 << 20, Console: &after})
	if err != nil {
		t.Fatal(err)
	}
	defer vm2.Close()
	if err := vm2.Start(); err != nil {
		t.Fatal(err)
	}
	waitForText(t, &after, "flood line 700 ")
	vm2.Pause()
	both := floodNumbers(t, before.String()+after.String())
	for i := 1; i < len(both); i++ {
		if both[i] != both[i-1]+1 {
			t.Fatalf("line %d after line %d", both[i], both[i-1])
		}
	}
	first := floodNumbers(t, after.String())[0]
	if first <= 300 {
		t.Fatalf("the restored guest started at line %d", first)
	}

	// Reset: back to the snapshot, the count again from the same line.
	if err := vm2.Reset(); err != nil {
		t.Fatal(err)
	}
	if vm2.State() != StatePaused {
		t.Fatalf("a paused VM is %v after Reset", vm2.State())
	}
	again := len(after.String())
	if err := vm2.Resume(); err != nil {
		t.Fatal(err)
	}
	waitForTextFrom(t, &after, again, "flood line 400 ")
	restarted := floodNumbers(t, after.String()[again:])[0]
	if restarted != first {
		t.Fatalf("after Reset the count went on from line %d, not from the snapshot's",
			restarted)
	}
	vm2.Stop()

	// A damaged state file: ErrFormat, and that VM cannot start.
	state := filepath.Join(dir, "state")
	data, _ := os.ReadFile(state)
	os.WriteFile(state, data[:len(data)-1], 0o600)
	if _, err := RestoreVM(dir, Config{Memory: 32 << 20}); !errors.Is(err, ErrFormat) {
		t.Fatalf("a truncated state file: %v, want ErrFormat", err)
	}
}

// A diff snapshot holds what changed since the full one before it, small on
// disk, and a new VM restored from it counts on from the diff's line.
func TestSnapshotDiffRestoresOnItsBase(t *testing.T) {
	tmp := t.TempDir()
	base, diff := filepath.Join(tmp, "base"), filepath.Join(tmp, "diff")
	var before, after syncBuffer
	vm, err := NewVM(Config{Kernel: testGuest(t), Memory: 32 << 20, Cmdline: "kvmc.test=flood",
		Console: &before})
	if err != nil {
		t.Fatal(err)
	}
	defer vm.Close()
	if err := vm.Start(); err != nil {
		t.Fatal(err)
	}
	waitForText(t, &before, "flood line 300 ")
	vm.Pause()
	if err := vm.SnapshotDiff(diff); !errors.Is(err, ErrState) ||
		!strings.Contains(err.Error(), "take a full one first") {
		t.Fatalf("a diff without a base: %v, want ErrState", err)
	}
	if err := vm.Snapshot(base); err != nil {
		t.Fatal(err)
	}
	vm.Resume()
	waitForText(t, &before, "flood line 500 ")
	vm.Pause()
	if err := vm.SnapshotDiff(base); !errors.Is(err, ErrInvalid) {
		t.Fatalf("a diff into its base's directory: %v, want ErrInvalid", err)
	}
	if err := vm.SnapshotDiff(diff); err != nil {
		t.Fatal(err)
	}
	vm.Close()
	var b, d syscall.Stat_t
	syscall.Stat(filepath.Join(base, "memory"), &b)
	syscall.Stat(filepath.Join(diff, "memory"), &d)
	if d.Blocks == 0 || d.Blocks >= b.Blocks/4 {
		t.Fatalf("the diff uses %d blocks, its base %d", d.Blocks, b.Blocks)
	}
	vm2, err := RestoreVM(diff, Config{Memory: 32 << 20, Console: &after})
	if err != nil {
		t.Fatal(err)
	}
	defer vm2.Close()
	vm2.Start()
	waitForText(t, &after, "flood line 900 ")
	vm2.Pause()
	both := floodNumbers(t, before.String()+after.String())
	for i := 1; i < len(both); i++ {
		if both[i] != both[i-1]+1 {
			t.Fatalf("line %d after line %d", both[i], both[i-1])
		}
	}
	if first := floodNumbers(t, after.String())[0]; first <= 500 {
		t.Fatalf("the diff restored line %d, before the diff", first)
	}
}

// A VM with devices kvmc cannot save yet says which.
func TestSnapshotNamesWhatCannotBeSaved(t *testing.T) {
	vm, err := NewVM(Config{Kernel: testGuest(t), Memory: 32 << 20, Cmdline: idle})
	if err != nil {
		t.Fatal(err)
	}
	defer vm.Close()
	dev := PCIDevice{VendorID: 0x1234, DeviceID: 0x5678}
	dev.BARs[0] = PCIBar{Size: 4096, Kind: PCIBarMem32}
	if _, err := vm.AddPCIDevice(dev); err != nil {
		t.Fatal(err)
	}
	vm.Start()
	vm.Pause()
	if err := vm.Snapshot(t.TempDir()); !errors.Is(err, ErrNotSupported) ||
		!strings.Contains(err.Error(), "PCI devices (from the program)") {
		t.Fatalf("%v, want ErrNotSupported naming PCI devices from the program", err)
	}
}

// waitForTextFrom waits until b holds text after its first from bytes.
func waitForTextFrom(t *testing.T, b *syncBuffer, from int, text string) {
	t.Helper()
	for i := 0; i < 2000; i++ {
		if s := b.String(); len(s) > from && strings.Contains(s[from:], text) {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("never saw %q after byte %d", text, from)
}

var diskLine = regexp.MustCompile(`^disk line (\d+) (ok|FAILED.*?)( vsock resets (\d+))?$`)

// diskLines: the number and vsock resets of each whole "disk line" of the
// test guest's disk-count mode, each of which must be ok.
func diskLines(t *testing.T, text string) (numbers, resets []int) {
	t.Helper()
	lines := strings.Split(text, "\n")
	for _, line := range lines[1 : len(lines)-1] {
		m := diskLine.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		if m[2] != "ok" {
			t.Fatalf("%q", line)
		}
		n, _ := strconv.Atoi(m[1])
		r, _ := strconv.Atoi(m[4])
		numbers = append(numbers, n)
		resets = append(resets, r)
	}
	return numbers, resets
}

// echoServer answers each connection to path once, in capitals.
func echoServer(t *testing.T, path string) {
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				buf := make([]byte, 64)
				n, err := c.Read(buf)
				if err != nil {
					return
				}
				c.Write([]byte(strings.ToUpper(string(buf[:n]))))
				for {
					if _, err := c.Read(buf); err != nil {
						return
					}
				}
			}()
		}
	}()
}

// The guest writes its disk, reads the rng and makes a vsock connection on
// every line; saved mid-count and restored in a new VM, it counts on with
// every line ok, its vsock connections after one transport reset.
func TestDiskRNGAndVsockWorkAfterARestore(t *testing.T) {
	tmp := t.TempDir()
	disk := filepath.Join(tmp, "disk.img")
	if err := os.WriteFile(disk, make([]byte, 1<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	uds := filepath.Join(tmp, "v.sock")
	echoServer(t, uds+"_5000")
	var before, after syncBuffer
	config := Config{Kernel: testGuest(t), Memory: 32 << 20, Cmdline: "kvmc.test=disk-count",
		Disks: []Disk{{Path: disk}}, RNG: true, Vsock: &Vsock{CID: 3, UDSPath: uds},
		Console: &before}
	vm := newVM(t, config)
	if err := vm.Start(); err != nil {
		t.Fatal(err)
	}
	waitForText(t, &before, "disk line 100 ")
	vm.Pause()
	dir := filepath.Join(tmp, "snap")
	if err := vm.Snapshot(dir); err != nil {
		t.Fatal(err)
	}
	vm.Close()
	saved, resets := diskLines(t, before.String())
	for _, r := range resets {
		if r != 0 {
			t.Fatalf("a transport reset before any restore")
		}
	}
	last := saved[len(saved)-1]

	config.Kernel, config.Cmdline, config.Console = "", "", &after
	vm2, err := RestoreVM(dir, config)
	if err != nil {
		t.Fatal(err)
	}
	defer vm2.Close()
	if err := vm2.Start(); err != nil {
		t.Fatal(err)
	}
	waitForText(t, &after, "disk line "+strconv.Itoa(last+101)+" ")
	vm2.Pause()
	// A line the snapshot cut in two is whole across the seam.
	both, _ := diskLines(t, before.String()+after.String())
	for i := 1; i < len(both); i++ {
		if both[i] != both[i-1]+1 {
			t.Fatalf("line %d after line %d", both[i], both[i-1])
		}
	}
	// One transport reset, then connections again (the first line after
	// the restore may have been done before the guest looked).
	_, resets = diskLines(t, after.String())
	for i, r := range resets {
		if r != 1 && (i > 0 || r != 0) {
			t.Fatalf("vsock resets %d in line %d after the restore, want 1", r, i)
		}
	}
}
