package scenarios

import (
	"os"
	"testing"
)

func TestMain(m *testing.M) {
	if probeMain() {
		return
	}
	code := m.Run()
	cleanupBinary()
	os.Exit(code)
}
