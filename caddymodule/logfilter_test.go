package caddymodule

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// TestSafeEncoderDropsPeers encodes the lines caddy-l4 and Caddy write
// with peers' addresses through the gunshu log format: the peer fields
// are gone, the error keeps its words without the addresses, and other
// fields pass.
func TestSafeEncoderDropsPeers(t *testing.T) {
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel()
	var enc SafeEncoder
	if err := json.Unmarshal([]byte(`{"wrap":{"format":"json"}}`), &enc); err != nil {
		t.Fatal(err)
	}
	if err := enc.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	entry := zapcore.Entry{Level: zapcore.ErrorLevel, Time: time.Unix(0, 0), LoggerName: "layer4", Message: "matching connection"}
	buf, err := enc.EncodeEntry(entry, []zapcore.Field{
		zap.String("remote", "192.0.2.44:50123"),
		zap.String("local", "127.0.0.1:7001"),
		zap.Error(errors.New("read tcp 127.0.0.1:7001->192.0.2.44:50123: read: connection reset by peer")),
		zap.String("remote_ip", "192.0.2.45"),
		zap.Object("request", zapcore.ObjectMarshalerFunc(func(e zapcore.ObjectEncoder) error {
			e.AddString("remote_ip", "192.0.2.46")
			e.AddString("client_ip", "192.0.2.47")
			e.AddString("uri", "/echo/x")
			return nil
		})),
	})
	if err != nil {
		t.Fatal(err)
	}
	line := buf.String()
	for _, gone := range []string{"192.0.2.4", `"remote"`, `"remote_ip"`, `"client_ip"`} {
		if strings.Contains(line, gone) {
			t.Errorf("the line still holds %s: %s", gone, line)
		}
	}
	for _, kept := range []string{`"local":"127.0.0.1:7001"`, `"error":"read tcp [address]->[address]: read: connection reset by peer"`, `"uri":"/echo/x"`} {
		if !strings.Contains(line, kept) {
			t.Errorf("the line lost %s: %s", kept, line)
		}
	}
}
