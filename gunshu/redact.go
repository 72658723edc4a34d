package gunshu

// Redacted is err's text without the socket addresses of the network
// errors in it, for logs that must not name a peer (see redactedError).
func Redacted(err error) string { return redactedError(err) }
