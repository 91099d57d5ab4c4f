// Package helm holds the tests of the joules Helm chart (./joules): lint,
// rendering with every values file under joules/ci, strict decoding into
// the Kubernetes API types, and the rendered configurations checked by the
// aggregator's own loader. It is a module of its own so that the joules
// module does not depend on Helm.
package helm
