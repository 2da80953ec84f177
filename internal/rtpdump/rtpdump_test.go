package rtpdump

import (
	"bytes"
	"errors"
	"io"
	"reflect"
	"testing"
	"time"
)

func TestRoundTrip(t *testing.T) {
	var buf bytes.Buffer
	start := time.Date(2026, 12, 6, 19, 0, 0, 123456000, time.UTC)
	w, err := NewWriter(&buf, "127.0.0.1/5004", start)
	if err != nil {
		t.Fatal(err)
	}
	in := []Packet{
		{Data: []byte{0x80, 0x60, 0, 1, 0, 0, 0, 1, 0, 0, 0, 2, 0xaa}, Len: 13, At: 0},
		{Data: []byte{0x80, 0xe0, 0, 2}, Len: 1200, At: 1500 * time.Millisecond},
	}
	for _, p := range in {
		if err := w.Write(p); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Write(Packet{Data: []byte{1, 2}, Len: 1}); err == nil {
		t.Error("a packet stored longer than it was: no error")
	}
	if !bytes.HasPrefix(buf.Bytes(), []byte("#!rtpplay1.0 127.0.0.1/5004\n")) {
		t.Errorf("first line: %q", buf.Bytes()[:28])
	}
	r, err := NewReader(bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	if r.Addr != "127.0.0.1/5004" || !r.Start.Equal(start) {
		t.Errorf("header: %q %v", r.Addr, r.Start)
	}
	out, err := r.All()
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(in, out) {
		t.Errorf("read %+v, wrote %+v", out, in)
	}
	// Cut anywhere inside the last record: an error, not io.EOF.
	for cut := buf.Len() - 1; cut > buf.Len()-12; cut-- {
		r, _ := NewReader(bytes.NewReader(buf.Bytes()[:cut]))
		var err error
		for err == nil {
			_, err = r.Next()
		}
		if errors.Is(err, io.EOF) {
			t.Errorf("cut to %d bytes: io.EOF", cut)
		}
	}
	if _, err := NewReader(bytes.NewReader([]byte("hello\n"))); err == nil {
		t.Error("not an rtpdump file: no error")
	}
}
