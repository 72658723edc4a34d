package caddymodule

import (
	"context"
	"net/http"
	"sort"
	"time"

	"github.com/gunshu/caddy-gunshu/gunshu"
)

// What the admin API, the status page and the CLI show of the managers'
// services and of the relays: JSON views, with no address of a client.

// serviceView is one service as the admin API and the status page show it.
type serviceView struct {
	Address         string    `json:"address"`
	FirstRegistered time.Time `json:"first_registered"`
	LastRegistered  time.Time `json:"last_registered"`
	// Health is "healthy" (last test ok), "failing" or "untested".
	Health string `json:"health"`
	// LastTest and LastTestLatencyMS are absent until patrol tested it.
	LastTest            *time.Time `json:"last_test,omitempty"`
	LastTestLatencyMS   *float64   `json:"last_test_latency_ms,omitempty"`
	ConsecutiveFailures int        `json:"consecutive_failures"`
}

func serviceViews(ctx context.Context, m *gunshu.Manager) ([]serviceView, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	services, err := m.Registry.Services(ctx)
	if err != nil {
		return nil, apiError(http.StatusBadGateway, "reading registry: %v", err)
	}
	out := make([]serviceView, 0, len(services))
	for _, s := range services {
		v := serviceView{
			Address:             s.Addr,
			FirstRegistered:     s.FirstSeen,
			LastRegistered:      s.LastSeen,
			Health:              "untested",
			ConsecutiveFailures: s.Failures,
		}
		if !s.LastTest.IsZero() {
			v.LastTest = &s.LastTest
			v.Health = "failing"
			if s.LastTestOK {
				ms := float64(s.LastLatency) / float64(time.Millisecond)
				v.Health, v.LastTestLatencyMS = "healthy", &ms
			}
		}
		out = append(out, v)
	}
	return out, nil
}

// relayView is one relay handler in GET /gunshu/relays.
type relayView struct {
	Advertise      string             `json:"advertise,omitempty"`
	Registrations  []registrationView `json:"registrations"`
	ActiveSessions int                `json:"active_sessions"`
}

// registrationView is the latest registration with one manager.
type registrationView struct {
	Manager string `json:"manager"`
	// LastAttempt is absent until the first attempt ends.
	LastAttempt *time.Time `json:"last_attempt,omitempty"`
	OK          bool       `json:"ok"`
	Error       string     `json:"error,omitempty"`
	Successes   int        `json:"successes"`
}

func registrationViews(status []gunshu.Registration) []registrationView {
	out := make([]registrationView, 0, len(status))
	for _, st := range status {
		v := registrationView{Manager: st.Manager, OK: st.OK, Error: st.Error, Successes: st.Successes}
		if !st.When.IsZero() {
			v.LastAttempt = &st.When
		}
		out = append(out, v)
	}
	return out
}

// relayViews describes the relay handlers of the newest config.
func relayViews() []relayView {
	out := []relayView{}
	a := newestApp()
	if a == nil {
		return out
	}
	for _, r := range a.Relays() {
		out = append(out, relayView{
			Advertise:      r.AdvertisedAddr(),
			Registrations:  registrationViews(r.Registrations()),
			ActiveSessions: r.Active(),
		})
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Advertise < out[j].Advertise })
	return out
}
