// Package authn says who is calling the API: the operator on the unix socket, the
// holder of a verified client certificate, or the original caller a manager
// vouches for when it forwards a request. What each may do is the API's business.
package authn
