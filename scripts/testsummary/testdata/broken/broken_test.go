// Package broken does not compile: the testsummary tests check that a build
// failure is shown and fails the run.
package broken

var notAnInt int = "a string"
