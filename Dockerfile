# ksr in a container: the wheel of this checkout in a venv, run as a non-root user.
#   docker build -t ksr .
#   docker run --rm -p 5060:5060/udp -p 5060:5060/tcp ksr
# /etc/ksr/ksr.toml is packaging/ksr.toml (mount your own over it); the bundled default
# script runs unless it names another. compose.yaml adds PostgreSQL and Redis.
# (Written without a Docker daemon at hand: see docs/running-as-a-service.md.)

FROM python:3.12-slim-bookworm AS build
WORKDIR /src
# a C compiler for the modules the install compiles with mypyc (docs/build.md); only in this stage
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev \
 && rm -rf /var/lib/apt/lists/*
COPY . .
# the package plus its PostgreSQL/Redis drivers; every dependency ships as a binary wheel
RUN python -m venv /opt/ksr \
 && /opt/ksr/bin/pip install --no-cache-dir --upgrade pip \
 && /opt/ksr/bin/pip install --no-cache-dir '.[postgres,redis,hiredis]'

FROM python:3.12-slim-bookworm
RUN groupadd --system ksr \
 && useradd --system --gid ksr --home-dir /var/lib/ksr --shell /usr/sbin/nologin ksr \
 && install -d -o ksr -g ksr -m 0750 /var/lib/ksr /run/ksr \
 && install -d -m 0755 /etc/ksr
COPY --from=build /opt/ksr /opt/ksr
COPY packaging/ksr.toml /etc/ksr/ksr.toml
ENV PATH=/opt/ksr/bin:$PATH \
    PYTHONUNBUFFERED=1
USER ksr
WORKDIR /var/lib/ksr
EXPOSE 5060/udp 5060/tcp
# the RPC socket is /run/ksr/ksr_rpc.sock (writable by ksr): a cheap liveness question
HEALTHCHECK --interval=30s --timeout=5s CMD ["ksr", "rpc", "core.uptime"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["ksr"]
CMD ["run", "--config", "/etc/ksr/ksr.toml"]
