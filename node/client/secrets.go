package client

import (
	"context"
	"net/http"
	"net/url"

	"github.com/swarmlet/swarmlet/api"
)

// Secrets and configs: kind picks /v1/secrets or /v1/configs.

func secretsPath(kind api.SecretKind) string { return "/v1/" + string(kind) + "s" }

func (c *Client) Secrets(ctx context.Context, kind api.SecretKind) ([]api.Secret, error) {
	var out []api.Secret
	_, err := c.Do(ctx, http.MethodGet, secretsPath(kind), nil, &out)
	return out, err
}

func (c *Client) Secret(ctx context.Context, kind api.SecretKind, name string) (api.Secret, error) {
	var out api.Secret
	_, err := c.Do(ctx, http.MethodGet, secretsPath(kind)+"/"+url.PathEscape(name), nil, &out)
	return out, err
}

func (c *Client) CreateSecret(ctx context.Context, kind api.SecretKind, req api.SecretCreateRequest) (api.Secret, error) {
	var out api.Secret
	_, err := c.Do(ctx, http.MethodPost, secretsPath(kind), req, &out)
	return out, err
}

// UpdateSecret stores a new version; the answer names the services that roll to it.
func (c *Client) UpdateSecret(ctx context.Context, kind api.SecretKind, name string, data []byte) (api.SecretUpdateAnswer, error) {
	var out api.SecretUpdateAnswer
	_, err := c.Do(ctx, http.MethodPost, secretsPath(kind)+"/"+url.PathEscape(name)+"/update", api.SecretUpdateRequest{Data: data}, &out)
	return out, err
}

func (c *Client) RemoveSecret(ctx context.Context, kind api.SecretKind, name string) error {
	_, err := c.Do(ctx, http.MethodDelete, secretsPath(kind)+"/"+url.PathEscape(name), nil, nil)
	return err
}
