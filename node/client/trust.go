package client

import (
	"context"
	"net/http"

	"github.com/swarmlet/swarmlet/api"
)

// RenewCertificate asks for a new certificate of the calling node for the key of csr.
func (c *Client) RenewCertificate(ctx context.Context, csr []byte) (api.CertificateResponse, error) {
	var out api.CertificateResponse
	_, err := c.Do(ctx, http.MethodPost, "/v1/dispatcher/certificate", api.CertificateRequest{CSR: csr}, &out)
	return out, err
}

// IssueClient asks for an operator's client certificate for the key of csr.
func (c *Client) IssueClient(ctx context.Context, name string, csr []byte) (api.CertificateResponse, error) {
	var out api.CertificateResponse
	_, err := c.Do(ctx, http.MethodPost, "/v1/ca/issue-client", api.CertificateRequest{CSR: csr, Name: name}, &out)
	return out, err
}

// CA describes the cluster's CA and a rotation's progress.
func (c *Client) CA(ctx context.Context) (api.CAInfo, error) {
	var out api.CAInfo
	_, err := c.Do(ctx, http.MethodGet, "/v1/ca", nil, &out)
	return out, err
}

// RotateCA starts a CA rotation.
func (c *Client) RotateCA(ctx context.Context) (api.CAInfo, error) {
	var out api.CAInfo
	_, err := c.Do(ctx, http.MethodPost, "/v1/ca/rotate", nil, &out)
	return out, err
}

// UnlockKey is the cluster's unlock key ("" without autolock).
func (c *Client) UnlockKey(ctx context.Context) (api.UnlockKey, error) {
	var out api.UnlockKey
	_, err := c.Do(ctx, http.MethodGet, "/v1/unlock-key", nil, &out)
	return out, err
}

// RotateUnlockKey replaces the unlock key.
func (c *Client) RotateUnlockKey(ctx context.Context) (api.UnlockKey, error) {
	var out api.UnlockKey
	_, err := c.Do(ctx, http.MethodPost, "/v1/unlock-key/rotate", nil, &out)
	return out, err
}

// Unlock gives a locked manager its unlock key.
func (c *Client) Unlock(ctx context.Context, key string) error {
	_, err := c.Do(ctx, http.MethodPost, "/v1/unlock", api.UnlockRequest{Key: key}, nil)
	return err
}

// GossipKey describes the gossip keyring.
func (c *Client) GossipKey(ctx context.Context) (api.GossipKeyInfo, error) {
	var out api.GossipKeyInfo
	_, err := c.Do(ctx, http.MethodGet, "/v1/gossip-key", nil, &out)
	return out, err
}

// RotateGossipKey starts a gossip key rotation.
func (c *Client) RotateGossipKey(ctx context.Context) (api.GossipKeyInfo, error) {
	var out api.GossipKeyInfo
	_, err := c.Do(ctx, http.MethodPost, "/v1/gossip-key/rotate", nil, &out)
	return out, err
}
