package aggregator

import (
	"net"
	"net/http"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// clientLimits bounds the requests of each client (its IP address) with a
// token bucket, so one runaway writer cannot take the aggregator from the
// rest. Clients not seen for ten minutes are forgotten.
type clientLimits struct {
	every rate.Limit
	burst int

	mu        sync.Mutex
	clients   map[string]*client
	lastSweep time.Time
}

type client struct {
	limiter *rate.Limiter
	seen    time.Time
}

func newClientLimits(perSecond float64, burst int) *clientLimits {
	if perSecond <= 0 {
		return nil
	}
	return &clientLimits{every: rate.Limit(perSecond), burst: max(burst, 1), clients: map[string]*client{}}
}

// allow takes one request of the client at now; when it must wait, it says
// how long.
func (c *clientLimits) allow(r *http.Request, now time.Time) (bool, time.Duration) {
	if c == nil {
		return true, 0
	}
	key, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		key = r.RemoteAddr
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if now.Sub(c.lastSweep) > time.Minute {
		for k, cl := range c.clients {
			if now.Sub(cl.seen) > 10*time.Minute {
				delete(c.clients, k)
			}
		}
		c.lastSweep = now
	}
	cl := c.clients[key]
	if cl == nil {
		cl = &client{limiter: rate.NewLimiter(c.every, c.burst)}
		c.clients[key] = cl
	}
	cl.seen = now
	res := cl.limiter.ReserveN(now, 1)
	if delay := res.DelayFrom(now); delay > 0 {
		res.CancelAt(now)
		return false, delay
	}
	return true, 0
}
