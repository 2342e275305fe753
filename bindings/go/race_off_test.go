//go:build !race

package kvmc

const raceEnabled = false
