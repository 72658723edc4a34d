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

// Health words, one vocabulary for the CLI, the admin API and the status
// page.
const (
	healthHealthy  = "healthy"  // the last test was answered
	healthFailing  = "failing"  // the last test was not
	healthUntested = "untested" // not tested yet
)

// serviceView is one service as the admin API and the status page show it.
type serviceView struct {
	Address         string    `json:"address"`
	FirstRegistered time.Time `json:"first_registered"`
	LastRegistered  time.Time `json:"last_registered"`
	// Health is healthHealthy, healthFailing or healthUntested, from the
	// manager's patrol.
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
			Health:              healthUntested,
			ConsecutiveFailures: s.Failures,
		}
		if !s.LastTest.IsZero() {
			v.LastTest = &s.LastTest
			v.Health = healthFailing
			if s.LastTestOK {
				ms := float64(s.LastLatency) / float64(time.Millisecond)
				v.Health, v.LastTestLatencyMS = healthHealthy, &ms
			}
		}
		out = append(out, v)
	}
	return out, nil
}

// managerView is one manager in GET /gunshu/managers/{name}: its network
// and its services.
type managerView struct {
	Name     string        `json:"name"`
	Network  networkView   `json:"network"`
	Services []serviceView `json:"services"`
}

// networkView is a manager's network as an operator judges it: how many
// services it lists, their health, and what routes among them hide.
type networkView struct {
	Services int          `json:"services"`
	Healthy  int          `json:"healthy"`
	Failing  int          `json:"failing"`
	Untested int          `json:"untested"`
	Exposure exposureView `json:"exposure"`
}

// exposureView is what one corrupt relay learns of the routes of an
// initiator with cover and the default route settings: it is one of the
// listed services and offers routes among the others. The figures and the
// warning are the ones that initiator computes and logs (PRIVACY.md).
type exposureView struct {
	UsableRelays int `json:"usable_relays"`
	// Revealing is the share of the corrupt relay's observations in which
	// its predecessor is more likely than not the initiator.
	Revealing     float64 `json:"revealing"`
	MeanPosterior float64 `json:"mean_posterior"`
	MeanRoute     float64 `json:"mean_route"`
	MeetsTargets  bool    `json:"meets_targets"`
	// Warning is the initiator's warning, absent when the targets are met.
	Warning string `json:"warning,omitempty"`
}

func newNetworkView(services []serviceView) networkView {
	health := make([]string, len(services))
	for i, s := range services {
		health[i] = s.Health
	}
	return networkOf(health)
}

// networkOf is the network of services of these health words, one each.
func networkOf(health []string) networkView {
	n := networkView{Services: len(health)}
	for _, h := range health {
		switch h {
		case healthHealthy:
			n.Healthy++
		case healthFailing:
			n.Failing++
		default:
			n.Untested++
		}
	}
	n.Exposure = newExposureView(max(len(health)-1, 0))
	return n
}

func newExposureView(usable int) exposureView {
	var d gunshu.Dialer // an entrance's default route settings
	e := d.RouteExposure(usable)
	warning := d.RouteSizeWarning(usable)
	return exposureView{
		UsableRelays: usable, Revealing: e.Revealing, MeanPosterior: e.MeanPosterior, MeanRoute: e.MeanRoute,
		MeetsTargets: warning == "", Warning: warning,
	}
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
