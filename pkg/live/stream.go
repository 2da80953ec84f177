package live

import (
	"encoding/json"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
)

// Viewer limits.
const (
	// maxLag is how far (in media time) a viewer's queue may reach behind
	// the newest chunk before the viewer skips to the next keyframe.
	maxLag = 2 * time.Second
	// maxQueueBytes bounds a viewer's queue whatever its media time.
	maxQueueBytes = 4 << 20
	// maxGOPBytes bounds what is kept since the latest keyframe for
	// viewers to come (beyond it they wait for the next keyframe).
	maxGOPBytes = 16 << 20
	// writeTimeout ends a viewer whose socket takes no data for this long.
	writeTimeout = 10 * time.Second
	// pingInterval and pongTimeout keep the WebSocket alive and find dead ones.
	pingInterval = 2 * time.Second
	pongTimeout  = 6 * time.Second
)

// broadcast fans one muxer's stream out to viewers. It keeps the header and
// the chunks since the latest key chunk, so a viewer who comes starts at the
// most recent keyframe.
type broadcast struct {
	mu       sync.Mutex
	mime     string
	init     []byte
	gop      []chunk
	gopBytes int
	gopOK    bool // gop starts with a key chunk
	viewers  map[*viewer]struct{}
	info     streamInfo
}

// streamInfo is the text message that precedes a stream's header.
type streamInfo struct {
	Type      string `json:"type"`
	Mime      string `json:"mime"`
	Stream    string `json:"stream"`
	Publisher string `json:"publisher"`
}

func newBroadcast() *broadcast { return &broadcast{viewers: make(map[*viewer]struct{})} }

// header implements output: a new stream starts.
func (b *broadcast) header(init []byte, mime string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.init, b.mime = init, mime
	b.info.Mime = mime
	b.gop, b.gopBytes, b.gopOK = nil, 0, false
	for v := range b.viewers {
		v.startStream(b.info, init)
	}
}

// chunk implements output.
func (b *broadcast) chunk(c chunk) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if c.key {
		b.gop, b.gopBytes, b.gopOK = b.gop[:0:0], 0, true
	}
	if b.gopOK {
		if b.gopBytes+len(c.data) > maxGOPBytes {
			b.gop, b.gopBytes, b.gopOK = nil, 0, false
		} else {
			b.gop = append(b.gop, c)
			b.gopBytes += len(c.data)
		}
	}
	for v := range b.viewers {
		v.push(c)
	}
}

// live reports whether a stream is being played (its header is out).
func (b *broadcast) live() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.init != nil
}

// setStream names the stream the next header is of.
func (b *broadcast) setStream(id, publisher string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.info = streamInfo{Type: "stream", Stream: id, Publisher: publisher}
}

// add makes v a viewer: it gets the current header and the chunks since the
// latest keyframe at once.
func (b *broadcast) add(v *viewer) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.viewers[v] = struct{}{}
	if b.init == nil {
		return
	}
	v.startStream(b.info, b.init)
	if b.gopOK {
		for _, c := range b.gop {
			v.push(c)
		}
	}
}

func (b *broadcast) remove(v *viewer) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.viewers, v)
	return len(b.viewers)
}

// stopped tells the viewers that the stream they watch ended (they wait for
// the next one).
func (b *broadcast) stopped(reason string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.init, b.gop, b.gopBytes, b.gopOK = nil, nil, 0, false
	for v := range b.viewers {
		v.text(map[string]string{"type": "waiting", "reason": reason})
	}
}

func (b *broadcast) list() []*viewer {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]*viewer, 0, len(b.viewers))
	for v := range b.viewers {
		out = append(out, v)
	}
	return out
}

// outMsg is one WebSocket message to a viewer.
type outMsg struct {
	text bool
	keep bool // text, or a stream's header: never dropped for lag
	data []byte
	ms   int64
}

// viewer is one WebSocket that plays a live stream. Its queue is bounded
// in media time and bytes: a viewer that cannot keep up loses what is
// queued and starts again at the next keyframe, so it never falls further
// behind the live edge than maxLag (plus what its socket holds).
type viewer struct {
	conn *websocket.Conn

	mu       sync.Mutex
	q        []outMsg
	qBytes   int
	skipping bool // until the next key chunk
	ending   bool // the last message is queued: close after it
	wake     chan struct{}
	done     chan struct{}
	once     sync.Once

	skips atomic.Uint64
}

func newViewer(conn *websocket.Conn) *viewer {
	return &viewer{conn: conn, wake: make(chan struct{}, 1), done: make(chan struct{}), skipping: true}
}

func (v *viewer) signal() {
	select {
	case v.wake <- struct{}{}:
	default:
	}
}

func (v *viewer) close() { v.once.Do(func() { close(v.done) }) }

// text queues a JSON text message.
func (v *viewer) text(msg any) {
	b, err := json.Marshal(msg)
	if err != nil {
		return
	}
	v.mu.Lock()
	if !v.ending {
		v.q = append(v.q, outMsg{text: true, keep: true, data: b})
	}
	v.mu.Unlock()
	v.signal()
}

// end queues a last text message; the WebSocket closes after it.
func (v *viewer) end(msg any) {
	b, _ := json.Marshal(msg)
	v.mu.Lock()
	if !v.ending {
		v.ending = true
		// What media is still queued is of no use now.
		kept := v.q[:0]
		for _, m := range v.q {
			if m.text {
				kept = append(kept, m)
			}
		}
		v.q = append(kept, outMsg{text: true, keep: true, data: b})
	}
	v.mu.Unlock()
	v.signal()
}

// startStream queues a stream's description and header; its chunks follow
// from a key chunk on.
func (v *viewer) startStream(info streamInfo, init []byte) {
	b, _ := json.Marshal(info)
	v.mu.Lock()
	if !v.ending {
		v.dropMediaLocked()
		v.q = append(v.q, outMsg{text: true, keep: true, data: b}, outMsg{keep: true, data: init})
		v.skipping = true
	}
	v.mu.Unlock()
	v.signal()
}

// dropMediaLocked drops the queued chunks (keeping text and headers).
func (v *viewer) dropMediaLocked() {
	kept := v.q[:0]
	v.qBytes = 0
	for _, m := range v.q {
		if m.keep {
			kept = append(kept, m)
		}
	}
	clear(v.q[len(kept):])
	v.q = kept
}

// push queues a chunk, unless the viewer waits for a keyframe; a viewer too
// far behind drops its queue and waits for the next one.
func (v *viewer) push(c chunk) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.ending {
		return
	}
	if !v.skipping {
		oldest := int64(-1)
		for _, m := range v.q {
			if !m.keep {
				oldest = m.ms
				break
			}
		}
		if v.qBytes+len(c.data) > maxQueueBytes || (oldest >= 0 && c.ms-oldest > maxLag.Milliseconds()) {
			v.dropMediaLocked()
			v.skipping = true
			v.skips.Add(1)
		}
	}
	if v.skipping {
		if !c.key {
			return
		}
		v.skipping = false
	}
	v.q = append(v.q, outMsg{data: c.data, ms: c.ms})
	v.qBytes += len(c.data)
	v.signal()
}

// writeLoop sends what is queued, and pings, until the viewer ends.
func (v *viewer) writeLoop() {
	ping := time.NewTicker(pingInterval)
	defer ping.Stop()
	for {
		select {
		case <-v.done:
			return
		case <-ping.C:
			if err := v.conn.WriteControl(websocket.PingMessage, nil, time.Now().Add(time.Second)); err != nil {
				v.close()
				return
			}
		case <-v.wake:
			for {
				v.mu.Lock()
				if len(v.q) == 0 {
					ending := v.ending
					v.mu.Unlock()
					if ending {
						_ = v.conn.WriteControl(websocket.CloseMessage,
							websocket.FormatCloseMessage(websocket.CloseNormalClosure, "the live has ended"), time.Now().Add(time.Second))
						v.close()
						return
					}
					break
				}
				m := v.q[0]
				v.q[0] = outMsg{}
				v.q = v.q[1:]
				if !m.keep {
					v.qBytes -= len(m.data)
				}
				v.mu.Unlock()
				kind := websocket.BinaryMessage
				if m.text {
					kind = websocket.TextMessage
				}
				_ = v.conn.SetWriteDeadline(time.Now().Add(writeTimeout))
				if err := v.conn.WriteMessage(kind, m.data); err != nil {
					v.close()
					return
				}
			}
		}
	}
}

// readLoop reads until the WebSocket ends (a viewer sends nothing after its
// request; pongs keep the deadline moving).
func (v *viewer) readLoop() {
	defer v.close()
	_ = v.conn.SetReadDeadline(time.Now().Add(pongTimeout))
	v.conn.SetPongHandler(func(string) error { return v.conn.SetReadDeadline(time.Now().Add(pongTimeout)) })
	for {
		if _, _, err := v.conn.NextReader(); err != nil {
			return
		}
	}
}
