package node

import (
	"net"
	"strconv"
)

// JoinAddr is the MANAGER_ADDR a join command names for a manager whose API is on
// apiPort: the bare address when that is the default port (join's default), else
// address:port, so the printed command works whatever --port-base was.
func JoinAddr(addr string, apiPort int) string {
	if apiPort == 0 || apiPort == DefaultPortBase+offsetAPI {
		return addr
	}
	return net.JoinHostPort(addr, strconv.Itoa(apiPort))
}
