# Container images of joules, one per binary:
#
#   docker build --target agent      -t joules-agent:0.1.0 .
#   docker build --target aggregator -t joules-aggregator:0.1.0 .
#   docker build --target cli        -t joules:0.1.0 .
#
# Neither this machine nor CI has a container engine, so these images are
# not built or run by the tests; the Helm chart (packaging/helm) is checked
# offline against the names and paths used here.

# Build and run stages share one Debian release: the binaries link against
# the build stage's glibc (cgo, for go-nvml's dlopen of libnvidia-ml) and
# must not need a newer one than the runtime image has.
ARG GO_IMAGE=golang:1.26-bookworm
ARG AGENT_BASE=gcr.io/distroless/base-debian12
ARG AGGREGATOR_BASE=gcr.io/distroless/base-debian12:nonroot

FROM ${GO_IMAGE} AS build
WORKDIR /src
# Modules first, so that a source change does not download them again.
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# No .git in the context: the version comes from the build arguments.
ARG VERSION=0.1.0
ARG REVISION=unknown
RUN make build VERSION=${VERSION} REVISION=${REVISION} BRANCH=release

# The agent runs as root in its pod without capabilities (RAPL's energy_uj
# is root-only, the kubelet socket needs root). libnvidia-ml.so.1 and the
# /dev/nvidia* nodes are not in the image: the NVIDIA container runtime
# adds them at start (NVIDIA_DRIVER_CAPABILITIES=utility).
FROM ${AGENT_BASE} AS agent
COPY --from=build /src/bin/joules-agent /usr/bin/joules-agent
COPY packaging/config/agent.yml /etc/joules/agent.yml
ENV NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=utility \
    GOMEMLIMIT=24MiB
EXPOSE 9560
ENTRYPOINT ["/usr/bin/joules-agent"]
CMD ["--config.file=/etc/joules/agent.yml"]

# The aggregator needs no privilege: distroless's nonroot user (65532).
FROM ${AGGREGATOR_BASE} AS aggregator
COPY --from=build /src/bin/joules-aggregator /usr/bin/joules-aggregator
COPY packaging/config/aggregator.yml /etc/joules/aggregator.yml
USER 65532:65532
EXPOSE 9561
ENTRYPOINT ["/usr/bin/joules-aggregator"]
CMD ["--config.file=/etc/joules/aggregator.yml"]

FROM ${AGGREGATOR_BASE} AS cli
COPY --from=build /src/bin/joules /usr/bin/joules
USER 65532:65532
ENTRYPOINT ["/usr/bin/joules"]
