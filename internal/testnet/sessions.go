package testnet

import (
	"fmt"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/gunshu/caddy-gunshu/gunshu"
)

// SessionLog is a gunshu.Observer for tests: it counts the sessions a
// role started and the est sessions it finished, and keeps how each
// session ended, for failure messages.
type SessionLog struct {
	Started atomic.Int64
	// Routes counts the est sessions that ended.
	Routes atomic.Int64

	mu    sync.Mutex
	ended []string
}

// SessionStarted counts a session.
func (l *SessionLog) SessionStarted(gunshu.Role) { l.Started.Add(1) }

// SessionEnded counts an est session and keeps how s ended.
func (l *SessionLog) SessionEnded(s gunshu.Session) {
	if s.Command == gunshu.CmdEst {
		l.Routes.Add(1)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.ended = append(l.ended, fmt.Sprintf("%s %s after %v, %d bytes up (%v)", s.Command, s.Outcome, s.Duration, s.Bytes.Up, s.Err))
}

// String lists how the sessions ended so far, one a line.
func (l *SessionLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.ended, "\n")
}
