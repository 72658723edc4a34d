package caddymodule

import (
	"encoding/json"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
)

// The fuzz targets feed every Caddyfile parser of this package arbitrary
// tokens: it must return an error or a config, never panic, and a config
// it returns must encode to JSON and validate (or be refused) without
// panicking either. Seeds: testdata/fuzz/<target>/.

// fuzzUnmarshal runs newModule's UnmarshalCaddyfile on input.
func fuzzUnmarshal(f *testing.F, newModule func() caddyfile.Unmarshaler) {
	f.Fuzz(func(t *testing.T, input string) {
		tokens, err := caddyfile.Tokenize([]byte(input), "Caddyfile")
		if err != nil {
			return
		}
		m := newModule()
		if err := m.UnmarshalCaddyfile(caddyfile.NewDispenser(tokens)); err != nil {
			return
		}
		if _, err := json.Marshal(m); err != nil {
			t.Fatalf("%q parsed into a config that does not encode: %v", input, err)
		}
		if v, ok := m.(caddy.Validator); ok {
			_ = v.Validate()
		}
	})
}

func FuzzRelayCaddyfile(f *testing.F) {
	fuzzUnmarshal(f, func() caddyfile.Unmarshaler { return new(RelayHandler) })
}

func FuzzResponderCaddyfile(f *testing.F) {
	fuzzUnmarshal(f, func() caddyfile.Unmarshaler { return new(ResponderHandler) })
}

func FuzzInitiatorCaddyfile(f *testing.F) {
	fuzzUnmarshal(f, func() caddyfile.Unmarshaler { return new(InitiatorHandler) })
}

func FuzzManagerCaddyfile(f *testing.F) {
	fuzzUnmarshal(f, func() caddyfile.Unmarshaler { return new(ManagerHandler) })
}

func FuzzMatcherCaddyfile(f *testing.F) {
	fuzzUnmarshal(f, func() caddyfile.Unmarshaler { return new(MatchGunshu) })
}

func FuzzStatusCaddyfile(f *testing.F) {
	fuzzUnmarshal(f, func() caddyfile.Unmarshaler { return new(StatusHandler) })
}

func FuzzMemoryRegistryCaddyfile(f *testing.F) {
	fuzzUnmarshal(f, func() caddyfile.Unmarshaler { return new(MemoryRegistry) })
}

func FuzzRedisRegistryCaddyfile(f *testing.F) {
	fuzzUnmarshal(f, func() caddyfile.Unmarshaler { return new(RedisRegistry) })
}

func FuzzListenerWrapperCaddyfile(f *testing.F) {
	fuzzUnmarshal(f, func() caddyfile.Unmarshaler { return new(ListenerWrapper) })
}

func FuzzTransportCaddyfile(f *testing.F) {
	f.Fuzz(func(t *testing.T, input string) {
		tokens, err := caddyfile.Tokenize([]byte(input), "Caddyfile")
		if err != nil {
			return
		}
		tr := new(Transport)
		if err := tr.UnmarshalCaddyfile(caddyfile.NewDispenser(tokens)); err != nil {
			return
		}
		if _, err := json.Marshal(tr); err != nil {
			t.Fatalf("%q parsed into a config that does not encode: %v", input, err)
		}
		_ = tr.validate()
	})
}

// FuzzGlobalOption fuzzes the gunshu global option: the app it builds must
// decode, and its managers validate or be refused.
func FuzzGlobalOption(f *testing.F) {
	f.Fuzz(func(t *testing.T, input string) {
		tokens, err := caddyfile.Tokenize([]byte(input), "Caddyfile")
		if err != nil {
			return
		}
		out, err := parseGlobalOption(caddyfile.NewDispenser(tokens), nil)
		if err != nil {
			return
		}
		var app App
		if err := json.Unmarshal(out.(httpcaddyfile.App).Value, &app); err != nil {
			t.Fatalf("%q parsed into an app that does not decode: %v", input, err)
		}
		for _, cfg := range app.Managers {
			if cfg != nil {
				_ = cfg.validate()
			}
		}
	})
}
