package mixer

import (
	"fmt"
	"io"
	"strings"
	"sync"
)

// ProgressBar returns a progress function that draws a one-line bar on w
// (a terminal): "[#########-----------]  45.0%  3.10x". It redraws the line
// in place and ends it with a newline at 100%. Safe for concurrent use.
func ProgressBar(w io.Writer) func(Progress) {
	const width = 30
	var mu sync.Mutex
	done := false
	return func(p Progress) {
		mu.Lock()
		defer mu.Unlock()
		if done {
			return
		}
		pct := min(max(p.Percent, 0), 100)
		n := int(pct / 100 * width)
		line := fmt.Sprintf("\r[%s%s] %5.1f%%  %5.2fx", strings.Repeat("#", n), strings.Repeat("-", width-n), pct, p.Speed)
		if pct >= 100 {
			line += "\n"
			done = true
		}
		_, _ = io.WriteString(w, line)
	}
}
