// A Go program outside kvmc's tree (tests/install/run.sh copies it into a
// module of its own) that boots the test guest through the installed
// libkvmc, found with pkg-config.
package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	kvmc "github.com/kvmc/kvmc/bindings/go"
)

func main() {
	var console strings.Builder
	vm, err := kvmc.NewVM(kvmc.Config{Kernel: os.Args[1], Memory: 16 << 20, Console: &console})
	if err != nil {
		fmt.Println(err)
		os.Exit(1)
	}
	defer vm.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	exit, err := vm.Run(ctx)
	if err != nil || !exit.Clean() || console.Len() == 0 {
		fmt.Println("run:", exit.Reason, err, console.Len())
		os.Exit(1)
	}
	fmt.Printf("go: kvmc %s, the test guest powered off after %d console bytes\n",
		kvmc.Version(), console.Len())
}
