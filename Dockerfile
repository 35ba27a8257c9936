# Polytune CPU image (Debian 12 packages only). Build: docker build -t polytune .
FROM debian:12
WORKDIR /src
COPY scripts/install-deps.sh scripts/install-deps.sh
RUN bash scripts/install-deps.sh && rm -rf /var/lib/apt/lists/*
COPY . .
RUN bash scripts/build.sh && install -m 0755 build/cli/polytune build/cli/polytune-engine /usr/local/bin/ \
 && install -m 0755 build/coordinator/polytune-coordinator build/worker/daemon/polytune-worker /usr/local/bin/
ENTRYPOINT ["polytune"]
