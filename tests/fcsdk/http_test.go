package fcsdk

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// server starts kvmc-firecracker on a socket of its own, without the SDK.
func server(t *testing.T) string {
	dir := t.TempDir()
	sock := filepath.Join(dir, "api.sock")
	cmd := exec.Command(need(t, "KVMC_FIRECRACKER"), "--api-sock", sock, "--id", "hostile")
	var stderr syncBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	for i := 0; ; i++ {
		if _, err := os.Stat(sock); err == nil {
			return sock
		}
		if i > 500 {
			t.Fatalf("no API socket after 5 s; stderr:\n%s", stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// raw sends bytes and reads one HTTP answer (or an error if the server
// closed the connection without one).
func raw(t *testing.T, sock, request string) (*http.Response, string, error) {
	conn, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := conn.Write([]byte(request)); err != nil {
		return nil, "", err
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	var body strings.Builder
	buf := make([]byte, 4096)
	for {
		n, err := resp.Body.Read(buf)
		body.Write(buf[:n])
		if err != nil {
			break
		}
	}
	return resp, body.String(), nil
}

// alive asserts the server still answers GET / as it should.
func alive(t *testing.T, sock string) {
	t.Helper()
	resp, body, err := raw(t, sock, "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
	if err != nil || resp.StatusCode != 200 || !strings.Contains(body, `"id":"hostile"`) {
		t.Fatalf("GET / after that: %v %v %q", resp, err, body)
	}
}

func fault(t *testing.T, body string) string {
	t.Helper()
	var v struct {
		FaultMessage string `json:"fault_message"`
	}
	if err := json.Unmarshal([]byte(body), &v); err != nil || v.FaultMessage == "" {
		t.Fatalf("not a Firecracker error body: %q (%v)", body, err)
	}
	return v.FaultMessage
}

// Hostile clients get an error each, and the server serves the next one.
func TestHostileClients(t *testing.T) {
	sock := server(t)

	// A body over the limit: refused, without being kept.
	big := strings.Repeat("x", 300000)
	resp, body, err := raw(t, sock, fmt.Sprintf("PUT /mmds HTTP/1.1\r\nHost: x\r\n"+
		"Content-Length: %d\r\n\r\n%s", len(big), big))
	if err != nil || resp.StatusCode != 400 ||
		!strings.Contains(fault(t, body), "larger than the limit of 51200") {
		t.Fatalf("big body: %v %v %q", resp, err, body)
	}
	alive(t, sock)

	// Headers beyond the connection's memory: an error or a hang-up, never a crash.
	resp, _, err = raw(t, sock, "GET / HTTP/1.1\r\nHost: x\r\nX-Big: "+
		strings.Repeat("y", 200000)+"\r\n\r\n")
	if err == nil && resp.StatusCode < 400 {
		t.Fatalf("huge header answered %d", resp.StatusCode)
	}
	alive(t, sock)

	// Not HTTP at all.
	resp, _, err = raw(t, sock, "HELLO THERE\r\n\r\n")
	if err == nil && resp.StatusCode < 400 {
		t.Fatalf("garbage answered %d", resp.StatusCode)
	}
	alive(t, sock)

	// Bytes that are not UTF-8 in the path: the error is still JSON.
	resp, body, err = raw(t, sock, "GET /\xff\xfe HTTP/1.1\r\nHost: x\r\n\r\n")
	if err != nil || resp.StatusCode != 400 || !strings.Contains(fault(t, body), "Invalid request") {
		t.Fatalf("bad path: %v %v %q", resp, err, body)
	}

	// Malformed JSON, wrong types, unknown fields: Firecracker's 400s.
	for req, want := range map[string]string{
		`{"vcpu_count": 2, "mem_size_mib": `:            "deserializing",
		`{"vcpu_count": true, "mem_size_mib": 64}`:      "expected an integer",
		`{"vcpu_count": 2, "mem_size_mib": 64, "a": 1}`: "unknown field `a`",
	} {
		resp, body, err = raw(t, sock, fmt.Sprintf("PUT /machine-config HTTP/1.1\r\nHost: x\r\n"+
			"Content-Length: %d\r\n\r\n%s", len(req), req))
		if err != nil || resp.StatusCode != 400 || !strings.Contains(fault(t, body), want) {
			t.Fatalf("%s: %v %v %q", req, resp, err, body)
		}
	}

	// A slow client holding a half-sent request does not block the others.
	slow, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	slow.Write([]byte("PUT /machine-config HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{"))
	done := make(chan struct{})
	go func() {
		alive(t, sock)
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("a slow client blocked the API")
	}
	// And the server is no worse for all that.
	resp, body, err = raw(t, sock, "GET /machine-config HTTP/1.1\r\nHost: x\r\n\r\n")
	if err != nil || resp.StatusCode != 200 || !strings.Contains(body, `"vcpu_count":1`) {
		t.Fatalf("machine-config changed: %v %v %q", resp, err, body)
	}
}

// --config-file with --no-api (flintlock's way): the VM boots from the
// file's sections at once, with --log-path and --metrics-path as given;
// the guest powers off and the process ends with 0. A bad section is
// refused before anything boots, naming it.
func TestConfigFileWithoutAPI(t *testing.T) {
	bin, guest := need(t, "KVMC_FIRECRACKER"), need(t, "KVMC_TEST_GUEST_ELF")
	dir := t.TempDir()
	logPath, metrics := filepath.Join(dir, "log"), filepath.Join(dir, "metrics")
	for _, p := range []string{logPath, metrics} {
		if err := os.WriteFile(p, nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	config := fmt.Sprintf(`{"boot-source": {"kernel_image_path": %q, "boot_args": "kvmc.test=boot-only"},
		"machine-config": {"vcpu_count": 1, "mem_size_mib": 32}, "entropy": {}}`, guest)
	file := filepath.Join(dir, "vm.json")
	if err := os.WriteFile(file, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "--config-file", file, "--no-api", "--log-path",
		logPath, "--level", "Info", "--show-level", "--metrics-path", metrics).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "kvmc test guest: up") {
		t.Fatalf("%v:\n%s", err, out)
	}
	logged, _ := os.ReadFile(logPath)
	if !strings.Contains(string(logged), ":Info] the microVM ended: poweroff") {
		t.Errorf("the log:\n%s", logged)
	}
	lines, _ := os.ReadFile(metrics)
	if !strings.Contains(string(lines), `"entropy":{`) {
		t.Errorf("the last metrics flush:\n%s", lines)
	}

	bad := `{"machine-config": {"vcpu_count": 99, "mem_size_mib": 32}}`
	if err := os.WriteFile(file, []byte(bad), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err = exec.CommandContext(ctx, bin, "--config-file", file, "--no-api").CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 ||
		!strings.Contains(string(out), "/machine-config: `vcpu_count` is 99") {
		t.Fatalf("a bad configuration: %v:\n%s", err, out)
	}
	out, err = exec.CommandContext(ctx, bin, "--no-api").CombinedOutput()
	if !errors.As(err, &exit) || exit.ExitCode() != 2 || !strings.Contains(string(out), "--no-api needs --config-file") {
		t.Fatalf("--no-api alone: %v:\n%s", err, out)
	}
}
