package mixer

import (
	"math"
	"slices"
	"time"

	"github.com/parley/parley/pkg/recorder"
)

// Rect is a tile's place on the canvas, in pixels.
type Rect struct{ X, Y, W, H int }

// Tile is one stream's place during a segment.
type Tile struct {
	// Stream indexes Manifest.Streams.
	Stream int
	Rect   Rect
}

// Segment is a span of the session during which the set of visible video
// streams does not change, with their layout.
type Segment struct {
	Start, End time.Duration
	Tiles      []Tile
}

// span is when a stream's video is visible.
type span struct {
	stream     int
	start, end time.Duration
	screen     bool
}

// videoSpans lists the streams with recorded video.
func videoSpans(m *recorder.Manifest) []span {
	var out []span
	for i, e := range m.Streams {
		if !e.HasVideo() || e.DurationMs <= 0 || e.State == recorder.StreamEmpty {
			continue
		}
		s := span{stream: i, start: e.Offset(), end: e.Offset() + e.Duration(), screen: e.Kind == "screen"}
		if d := timeline(m); d > 0 && s.end > d {
			s.end = d
		}
		if s.end > s.start {
			out = append(out, s)
		}
	}
	return out
}

// Layout cuts the session into segments where the set of visible video
// streams is constant and lays each out on a w x h canvas:
//
//   - no screen share: a grid of equal tiles, as many columns as gives the
//     largest 16:9 picture, in the order the streams were published;
//   - a screen share: the first screen takes the left three quarters of the
//     canvas (the whole canvas when alone), the other streams share the right
//     quarter as a grid.
//
// Segments without any video are left out (the canvas is black there).
func Layout(m *recorder.Manifest, w, h int) []Segment { return LayoutFor(m, w, h, LayoutGrid) }

// LayoutFor is Layout with a choice of layout. LayoutSpeaker also cuts the
// session where the dominant speaker changed (Manifest.Speakers) and, where
// no screen is shared, gives the speaker the place a screen share has: the
// left three quarters, the others small in the right quarter. The speaker is
// the most recent dominant one whose video shows then; before anyone spoke
// (or when no speaker's video shows) it is the grid.
func LayoutFor(m *recorder.Manifest, w, h int, layout string) []Segment {
	spans := videoSpans(m)
	var cuts []time.Duration
	for _, s := range spans {
		cuts = append(cuts, s.start, s.end)
	}
	speaker := layout == LayoutSpeaker
	if speaker {
		for _, c := range m.Speakers {
			cuts = append(cuts, c.At())
		}
	}
	slices.Sort(cuts)
	cuts = slices.Compact(cuts)
	var segs []Segment
	for i := 0; i+1 < len(cuts); i++ {
		t0, t1 := cuts[i], cuts[i+1]
		var vis []span
		for _, s := range spans {
			if s.start <= t0 && s.end >= t1 {
				vis = append(vis, s)
			}
		}
		if len(vis) == 0 {
			continue
		}
		big := -1
		if speaker {
			big = speakerAt(m, vis, t0)
		}
		tiles := arrange(vis, w, h, big)
		if n := len(segs); n > 0 && segs[n-1].End == t0 && slices.Equal(segs[n-1].Tiles, tiles) {
			segs[n-1].End = t1 // a speaker change that changed nothing on screen
			continue
		}
		segs = append(segs, Segment{Start: t0, End: t1, Tiles: tiles})
	}
	return segs
}

// speakerAt returns the index in vis of the most recent dominant speaker at
// t whose video is visible, or -1.
func speakerAt(m *recorder.Manifest, vis []span, t time.Duration) int {
	for i := len(m.Speakers) - 1; i >= 0; i-- {
		c := m.Speakers[i]
		if c.At() > t {
			continue
		}
		for k, s := range vis {
			if m.Streams[s.stream].StreamID == c.StreamID {
				return k
			}
		}
	}
	return -1
}

// arrange lays vis out: the first screen share large, else vis[speaker]
// (when speaker >= 0), else a grid.
func arrange(vis []span, w, h int, speaker int) []Tile {
	big := -1
	for i, s := range vis {
		if s.screen {
			big = i
			break
		}
	}
	if big < 0 {
		big = speaker
	}
	if big < 0 || len(vis) == 1 {
		return grid(vis, Rect{0, 0, w, h})
	}
	bigW := even(w * 3 / 4)
	tiles := []Tile{{Stream: vis[big].stream, Rect: Rect{0, 0, bigW, h}}}
	rest := slices.Delete(slices.Clone(vis), big, big+1)
	return append(tiles, grid(rest, Rect{bigW, 0, w - bigW, h})...)
}

// grid lays n streams out in area with the column count that gives the
// largest 16:9 pictures.
func grid(vis []span, area Rect) []Tile {
	n := len(vis)
	bestCols, bestArea := 1, -1.0
	for cols := 1; cols <= n; cols++ {
		rows := (n + cols - 1) / cols
		tw, th := float64(area.W)/float64(cols), float64(area.H)/float64(rows)
		pw := math.Min(tw, th*16/9)
		if a := pw * pw * 9 / 16; a >= bestArea-0.5 { // ties go to more columns (side by side)
			bestCols, bestArea = cols, a
		}
	}
	cols := bestCols
	rows := (n + cols - 1) / cols
	tw, th := even(area.W/cols), even(area.H/rows)
	tiles := make([]Tile, 0, n)
	for i, s := range vis {
		r, c := i/cols, i%cols
		// Centre a last, incomplete row.
		inRow := cols
		if r == rows-1 && n%cols != 0 {
			inRow = n % cols
		}
		x0 := area.X + (area.W-inRow*tw)/2
		y0 := area.Y + (area.H-rows*th)/2
		tiles = append(tiles, Tile{Stream: s.stream, Rect: Rect{even(x0 + c*tw), even(y0 + r*th), tw, th}})
	}
	return tiles
}

func even(v int) int { return v &^ 1 }
