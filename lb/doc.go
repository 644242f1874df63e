// Package lb maps virtual IPs and published ports to task backends through IPVS, nftables or a userspace proxy.
package lb
