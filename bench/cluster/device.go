package main

import (
	"bufio"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/eclipse/paho.mqtt.golang/packets"
)

// device is one MQTT 3.1.1 connection that publishes QoS 1 messages with a window of
// unacknowledged PUBLISH packets. It speaks the protocol through paho's packet codec on a
// plain connection instead of paho's client, whose per-message tokens, goroutines and
// channels cost the load generator about as much CPU as one of the nodes: on one machine the
// nodes would measure the generator's cost as much as their own.
type device struct {
	conn net.Conn
	id   int
}

// dialDevice connects and waits for the CONNACK.
func dialDevice(addr string, id int) (*device, error) {
	conn, err := net.DialTimeout("tcp", addr, 30*time.Second)
	if err != nil {
		return nil, err
	}
	c := packets.NewControlPacket(packets.Connect).(*packets.ConnectPacket)
	c.ProtocolName, c.ProtocolVersion = "MQTT", 4
	c.CleanSession = true
	c.ClientIdentifier = fmt.Sprintf("dev-%d-%d", id, time.Now().UnixNano())
	c.UsernameFlag, c.Username = true, "bench"
	c.PasswordFlag, c.Password = true, []byte(token)
	c.Keepalive = 120
	conn.SetDeadline(time.Now().Add(2 * time.Minute))
	if err := c.Write(conn); err != nil {
		conn.Close()
		return nil, err
	}
	p, err := packets.ReadPacket(conn)
	if err != nil {
		conn.Close()
		return nil, err
	}
	ack, ok := p.(*packets.ConnackPacket)
	if !ok || ack.ReturnCode != packets.Accepted {
		conn.Close()
		return nil, fmt.Errorf("device %d: CONNECT answered with %v", id, p)
	}
	conn.SetDeadline(time.Time{})
	return &device{conn: conn, id: id}, nil
}

// run publishes heart-rate readings until d has passed since start, keeping up to inflight
// messages unacknowledged, then waits up to 30 s for the outstanding PUBACKs. It returns the
// messages acknowledged and those sent but never acknowledged.
func (dv *device) run(start time.Time, d time.Duration, inflight int) (acked, failed int64) {
	window := make(chan struct{}, inflight) // one token per unacknowledged message
	var got atomic.Int64
	lost := make(chan struct{}) // closed when the connection fails
	go func() {                 // PUBACKs come in order; each frees one place in the window
		defer close(lost)
		br := bufio.NewReaderSize(dv.conn, 16<<10)
		for {
			p, err := packets.ReadPacket(br)
			if err != nil {
				return
			}
			if _, ok := p.(*packets.PubackPacket); ok {
				got.Add(1)
				<-window
			}
		}
	}()

	bw := bufio.NewWriterSize(dv.conn, 16<<10)
	rng := rand.New(rand.NewPCG(uint64(dv.id), 2))
	base := time.Date(2026, 11, 2, 0, 0, 0, 0, time.UTC).UnixMilli()
	pub := packets.NewControlPacket(packets.Publish).(*packets.PublishPacket)
	pub.Qos, pub.TopicName = 1, fmt.Sprintf("readings/heart_rate/dev-%d", dv.id)
	// take waits for a place in the window, sending what is buffered first when it is full.
	take := func() error {
		select {
		case window <- struct{}{}:
			return nil
		default:
		}
		if err := bw.Flush(); err != nil {
			return err
		}
		select {
		case window <- struct{}{}:
			return nil
		case <-lost:
			return errors.New("connection lost")
		}
	}
	var sent int64
	var err error
	for id := uint16(1); err == nil && time.Since(start) < d; id++ {
		if err = take(); err != nil {
			break
		}
		if id == 0 { // packet identifiers are 1..65535
			id = 1
		}
		pub.MessageID = id
		pub.Payload = fmt.Appendf(pub.Payload[:0], `{"subject":"patient-%d","time":%d,"values":{"bpm":%d}}`, dv.id, base+seq.Add(1), 50+rng.IntN(100))
		if err = pub.Write(bw); err == nil {
			sent++
		}
	}
	if err == nil {
		err = bw.Flush()
	}
	if err != nil {
		fmt.Printf("device %d: %v after %s; it stops sending\n", dv.id, err, time.Since(start).Round(time.Second))
	}
	// The outstanding acknowledgements: wait until the window is empty, the connection is
	// lost, or 30 s have passed.
	deadline := time.After(30 * time.Second)
	for got.Load() < sent {
		select {
		case <-lost:
			return got.Load(), sent - got.Load()
		case <-deadline:
			return got.Load(), sent - got.Load()
		case <-time.After(2 * time.Millisecond):
		}
	}
	return got.Load(), 0
}

// close sends DISCONNECT and closes the connection.
func (dv *device) close() {
	dv.conn.SetWriteDeadline(time.Now().Add(time.Second))
	packets.NewControlPacket(packets.Disconnect).Write(dv.conn)
	dv.conn.Close()
}

// connectDevices opens the MQTT device connections, spread over the nodes, connectAtOnce at
// a time.
func connectDevices(addrs []string, devices int) []*device {
	var out []*device
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, connectAtOnce)
	for c := range devices {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			dv, err := dialDevice(addrs[c%len(addrs)], c)
			if err != nil {
				fmt.Println("mqtt connect:", err)
				return
			}
			mu.Lock()
			out = append(out, dv)
			mu.Unlock()
		})
	}
	wg.Wait()
	return out
}

// benchMQTT publishes QoS 1 messages from every device for d, each keeping up to inflight
// PUBLISH packets unacknowledged (a sliding window: a new one goes out as soon as the oldest
// is acknowledged, as a gateway with a receive maximum does), and counts the acknowledged
// ones and those that were not acknowledged.
func benchMQTT(devs []*device, inflight int, d time.Duration) (acked, failed int64, el time.Duration) {
	var ok, bad atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for _, dv := range devs {
		wg.Go(func() {
			a, f := dv.run(start, d, inflight)
			ok.Add(a)
			bad.Add(f)
		})
	}
	wg.Wait()
	return ok.Load(), bad.Load(), time.Since(start)
}
