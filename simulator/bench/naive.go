package bench

import (
	"context"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/simlab/simlab/simulator/dataset"
)

// Naive replays a dataset the simple way, for comparison: no Kafka, one goroutine and one
// connection per source, sleeping until each record's absolute deadline, one write per record.
func Naive(ctx context.Context, ds *dataset.Dataset, addr string, start time.Time) error {
	var wg sync.WaitGroup
	errs := make(chan error, len(ds.Sources))
	for _, s := range ds.Sources {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.Dial("tcp", addr)
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			buf := make([]byte, 0, 256)
			for _, r := range s.Records {
				if d := time.Until(start.Add(r.Offset)); d > 0 {
					select {
					case <-ctx.Done():
						return
					case <-time.After(d):
					}
				}
				buf = append(append(buf[:0], r.Payload...), '\n')
				if _, err := c.Write(buf); err != nil {
					errs <- fmt.Errorf("%s: %w", s.ID(), err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	return <-errs
}
