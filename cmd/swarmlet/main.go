// Command swarmlet is the swarmlet daemon and its command line.
package main

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/swarmlet/swarmlet/node/client"
)

func main() {
	root := newRoot()
	if err := root.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "Error: "+oneLine(explain(err)))
		os.Exit(1)
	}
}

// explain turns transport failures into what the user should do.
func explain(err error) string {
	if errors.Is(err, client.ErrUnreachable) {
		return err.Error() + " (is the daemon running? start one with 'swarmlet init' or 'swarmlet join', or point --host at it)"
	}
	return err.Error()
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
