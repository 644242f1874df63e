// Package pki is the cluster's trust: its CA, node and operator certificates, the identity a peer's certificate proves, mutual-TLS configs, renewal, CA rotation and CA-pinning join tokens.
package pki
