package queue

import (
	"slices"
	"sync"
	"testing"
)

// Items come out in the order they went in, across growth and wrap-around,
// and the queue never holds more than its limit.
func TestOrderGrowthAndLimit(t *testing.T) {
	q := New[int](100)
	var want, got []int
	next := 0
	buf := make([]int, 0, 7)
	// Push and drain in uneven steps so head wraps at every ring size.
	for round := 0; round < 50; round++ {
		for i := 0; i < round%13+1; i++ {
			if q.Push(next) {
				want = append(want, next)
			}
			next++
		}
		got = append(got, q.Drain(buf[:0])...)
	}
	for q.Len() > 0 {
		got = append(got, q.Drain(buf[:0])...)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("out of order:\n got %v\nwant %v", got, want)
	}

	for i := 0; i < 100; i++ {
		if !q.Push(i) {
			t.Fatalf("push %d of 100 refused", i)
		}
	}
	if q.Push(100) {
		t.Fatal("a full queue took one more item")
	}
	if n := q.Len(); n != 100 {
		t.Fatalf("Len %d, want 100", n)
	}
	if c := len(q.ring); c != 100 {
		t.Fatalf("ring grew to %d, past the limit 100", c)
	}
	all := q.Drain(make([]int, 0, 200))
	if len(all) != 100 || all[0] != 0 || all[99] != 99 {
		t.Fatalf("drained %d items from %v to %v", len(all), all[0], all[len(all)-1])
	}
}

// An idle queue has allocated nothing; one item allocates a small ring.
func TestAllocatesAsItFills(t *testing.T) {
	q := New[[]byte](512)
	if q.ring != nil {
		t.Fatalf("a new queue allocated %d slots", len(q.ring))
	}
	q.Push([]byte("x"))
	if len(q.ring) != minCap {
		t.Fatalf("one item allocated %d slots, want %d", len(q.ring), minCap)
	}
}

// Close hands back what was queued and refuses later pushes.
func TestClose(t *testing.T) {
	q := New[int](10)
	for i := range 5 {
		q.Push(i)
	}
	q.Drain(make([]int, 0, 2)) // head moves: 2, 3, 4 remain
	rest := q.Close(nil)
	if !slices.Equal(rest, []int{2, 3, 4}) {
		t.Fatalf("Close returned %v, want [2 3 4]", rest)
	}
	if q.Push(9) {
		t.Fatal("a closed queue took an item")
	}
	if got := q.Drain(make([]int, 0, 4)); len(got) != 0 {
		t.Fatalf("a closed queue drained %v", got)
	}
}

// Many producers, one consumer: every accepted item comes out once, and
// each producer's items keep their order.
func TestConcurrentProducers(t *testing.T) {
	const producers, each = 4, 5000
	q := New[[2]int](64)
	var wg sync.WaitGroup
	accepted := make([]int, producers)
	for p := range producers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				if q.Push([2]int{p, i}) {
					accepted[p]++
				}
			}
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	last := []int{-1, -1, -1, -1}
	got := make([]int, producers)
	buf := make([][2]int, 0, 16)
	check := func(items [][2]int) {
		for _, it := range items {
			if it[1] <= last[it[0]] {
				t.Fatalf("producer %d: item %d after %d", it[0], it[1], last[it[0]])
			}
			last[it[0]] = it[1]
			got[it[0]]++
		}
	}
	for {
		select {
		case <-done:
			for q.Len() > 0 {
				check(q.Drain(buf[:0]))
			}
			if !slices.Equal(got, accepted) {
				t.Fatalf("received %v, accepted %v", got, accepted)
			}
			return
		default:
			check(q.Drain(buf[:0]))
		}
	}
}
