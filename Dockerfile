# Polytune CPU image: one image, three entry points (polytune, polytune-coordinator,
# polytune-worker), built from Debian 12 packages only. Build: scripts/build-image.sh (podman or
# buildah; it makes the debian:12 base with debootstrap where no registry is reachable), or
# `docker build -t polytune .`. Run: `podman run polytune polytune-coordinator --help`.
ARG BASE=debian:12

# Build stage: compilers and -dev packages, never shipped.
FROM ${BASE} AS build
WORKDIR /src
COPY scripts/install-deps.sh scripts/install-deps.sh
RUN POLYTUNE_DEPS=build bash scripts/install-deps.sh && rm -rf /var/lib/apt/lists/*
COPY . .
RUN rm -rf build && cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release \
      -DPOLYTUNE_BUILD_TESTS=OFF -DPOLYTUNE_BUILD_BENCH=OFF \
 && cmake --build build -j"$(nproc)" \
 && mkdir -p /out/bin /out/share/polytune \
 && install -m 0755 build/cli/polytune build/cli/polytune-engine build/coordinator/polytune-coordinator \
      build/worker/daemon/polytune-worker /out/bin/ \
 && cp -r examples /out/share/polytune/examples \
 && strip --strip-debug /out/bin/*
# The runtime packages are those owning the shared libraries the binaries load, plus OpenBLAS's
# OpenMP build, which the engine loads in place of the pthread one when it is there
# (ReexecWithTunedCpuEnvironment).
RUN for lib in $(ldd /out/bin/* | awk '/=> \//{print $3}' | sort -u); do \
      dpkg -S "$lib" 2>/dev/null || dpkg -S "$(readlink -f "$lib")" 2>/dev/null || dpkg -S "${lib#/usr}" 2>/dev/null || true; \
    done | cut -d: -f1 | sort -u >/out/runtime-packages.txt \
 && echo libopenblas0-openmp >>/out/runtime-packages.txt \
 && test -s /out/runtime-packages.txt && cat /out/runtime-packages.txt

# Runtime stage: the shared libraries, tini as PID 1 (SIGTERM reaches the daemons, zombies are
# reaped), a non-root user.
FROM ${BASE}
COPY --from=build /out/runtime-packages.txt /tmp/runtime-packages.txt
RUN apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends tini ca-certificates \
      $(cat /tmp/runtime-packages.txt) \
 && rm -rf /var/lib/apt/lists/* /tmp/runtime-packages.txt \
 && groupadd --system --gid 10001 polytune \
 && useradd --system --uid 10001 --gid 10001 --home-dir /home/polytune --create-home polytune
COPY --from=build /out/bin/ /usr/local/bin/
COPY --from=build /out/share/polytune/ /usr/share/polytune/
USER 10001:10001
WORKDIR /home/polytune
ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["polytune", "--help"]
