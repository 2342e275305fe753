package kvmc

import (
	"os"
	"regexp"
	"strings"
	"testing"
)

// Functions of kvmc.h the Go API does not call, and why.
var notUsed = map[string]string{
	"kvmc_strerror":                       "messages come from kvmc_last_error, codes are Code",
	"kvmc_config_set_console_fd":          "Console is an io.Writer, fed by the console callback",
	"kvmc_config_set_console_file":        "Console is an io.Writer, fed by the console callback",
	"kvmc_config_set_console_limit":       "only for a console file, which the binding never uses",
	"kvmc_vm_set_seccomp":                 "the Go runtime makes any system call on kvmc's threads",
	"kvmc_seccomp_confine_control_thread": "the Go runtime makes any system call",
}

// Every function of the public header is called by the binding or listed
// above: adding one to kvmc.h without doing the same here fails the build.
func TestEveryHeaderFunctionIsUsedOrExcluded(t *testing.T) {
	header, err := os.ReadFile("../../core/include/kvmc/kvmc.h")
	if err != nil {
		t.Fatal(err)
	}
	source, err := os.ReadFile("kvmc.go")
	if err != nil {
		t.Fatal(err)
	}
	names := regexp.MustCompile(`KVMC_API [^;(]*?\b(kvmc_\w+)\s*\(`).FindAllSubmatch(header, -1)
	if len(names) < 40 {
		t.Fatalf("found only %d functions in kvmc.h", len(names))
	}
	for _, m := range names {
		name := string(m[1])
		used := strings.Contains(string(source), name+"(")
		_, excluded := notUsed[name]
		if !used && !excluded {
			t.Errorf("%s is in kvmc.h but the Go binding neither calls it nor says why not", name)
		}
		if used && excluded {
			t.Errorf("%s is excluded but used", name)
		}
	}
}
