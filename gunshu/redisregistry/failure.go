package redisregistry

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/redis/go-redis/v9"
)

// Errors that say what is wrong with the credentials or the rights; the
// registry's errors wrap them (errors.Is) with the reply Redis gave.
var (
	ErrAuthRequired = errors.New("redis requires authentication: set the registry's password (and username, for an ACL user)")
	ErrAuthFailed   = errors.New("redis authentication failed: wrong username or password, or the user is disabled")
	ErrNoPermission = errors.New("the redis user lacks a right the registry needs (see ACLRules)")
)

// ACLRules are the Redis ACL rules of a user that can do everything the
// registry does, and nothing else, with the default key prefix: the
// registry's commands, those its scripts call, CLUSTER SLOTS for a
// Cluster client, and keys under the prefix. Create the user with
//
//	ACL SETUSER gunshu on >password <ACLRules>
//
// and with another key prefix, replace ~{gunshu:}* by ~{<prefix>}*.
const ACLRules = "resetkeys ~{gunshu:}* resetchannels -@all " +
	"+evalsha +eval +multi +exec +zrange +hgetall +cluster|slots " +
	"+exists +time +set +get +incr +zadd +zrem +zscore +zcard +zrangebyscore +zremrangebyscore +hget +hset +hdel +hincrby"

// failed is what the registry returns when a Redis operation failed: the
// error explained when it is about credentials or rights. It also asks a
// Cluster client to read the slot map again: go-redis does so by itself
// only every minute or on MOVED/READONLY, and a dead master's refused
// connections give neither, so without this the registry would keep
// writing to the dead master for up to a minute after its replica took
// over. (go-redis spaces reloads at least 200 ms apart.)
func (r *Registry) failed(err error) error {
	if cc, ok := r.client.(*redis.ClusterClient); ok {
		cc.ReloadState(context.Background())
	}
	return fmt.Errorf("redis registry: %w", explain(err))
}

// explain wraps err with ErrAuthRequired, ErrAuthFailed or ErrNoPermission
// when Redis refused for want of credentials or rights. Without a
// password, a server that requires one often answers a script not with
// NOAUTH but with "Protocol error: unauthenticated multibulk length",
// since it caps the requests it reads before authentication.
func explain(err error) error {
	msg := err.Error()
	switch {
	case strings.Contains(msg, "NOAUTH"), strings.Contains(msg, "unauthenticated"):
		return fmt.Errorf("%w: %w", ErrAuthRequired, err)
	case strings.Contains(msg, "WRONGPASS"), strings.Contains(msg, "invalid password"):
		return fmt.Errorf("%w: %w", ErrAuthFailed, err)
	case strings.Contains(msg, "NOPERM"):
		return fmt.Errorf("%w: %w", ErrNoPermission, err)
	}
	return err
}

// downMessage is the log message of a refresh that failed after one that
// worked (or first): what is wrong, and what the manager does meanwhile.
func downMessage(err error, haveSnapshot bool) string {
	effect := "list answers from the last snapshot, reg fails"
	if !haveSnapshot {
		effect = "no snapshot yet, list and reg fail"
	}
	switch {
	case errors.Is(err, ErrAuthRequired):
		return "Redis requires authentication: set the registry's password (and username); " + effect
	case errors.Is(err, ErrAuthFailed):
		return "Redis authentication failed: wrong username or password, or the user is disabled; " + effect
	case errors.Is(err, ErrNoPermission):
		return "the Redis user lacks a right the registry needs (README: Redis ACL); " + effect
	}
	return "redis registry unreachable: " + effect
}

// queuedError is the error of the first command of a transaction that
// failed when it was queued (a refused right, say), rather than the
// EXECABORT that ends the transaction; err if none did.
func queuedError(cmds []redis.Cmder, err error) error {
	for _, c := range cmds {
		if c.Err() != nil && !errors.Is(c.Err(), err) {
			return c.Err()
		}
	}
	return err
}
