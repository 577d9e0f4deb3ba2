# CryoProxy container image: a Maven build stage and a JRE runtime stage.
#
#   docker build -t cryoproxy:local .
#   docker run --rm cryoproxy:local --version
#
# Base images are build arguments, for private registries and mirrors:
#   --build-arg BUILD_IMAGE=registry.example/maven:3.9-eclipse-temurin-17
#   --build-arg RUNTIME_IMAGE=registry.example/eclipse-temurin:17-jre
# The runtime image needs java on the PATH and bash (for the health check); any Debian- or
# Ubuntu-based JRE 17+ image has both.
#
# MAVEN_ARGS is handed to Maven as it is, e.g. a local repository that the build may reuse:
#   podman build -v "$HOME/.m2:/host-m2" --build-arg MAVEN_ARGS=-Dmaven.repo.local=/host-m2/repository .
# (deploy/compose-up.sh does that). No credential is baked into the image: passwords reach the
# container through its environment (CRYOPROXY_* variables) at run time.

ARG BUILD_IMAGE=maven:3.9-eclipse-temurin-17
ARG RUNTIME_IMAGE=eclipse-temurin:17-jre

FROM ${BUILD_IMAGE} AS build
ARG MAVEN_ARGS=""
WORKDIR /src
COPY . /src
# package, not verify: formatting (spotless) and the integration tests (failsafe) are bound to
# verify and integration-test, after package, so they do not run. -Dmaven.test.skip=true skips
# compiling and running the unit tests too; -am builds the modules the proxy needs.
RUN mvn -B -q ${MAVEN_ARGS} package -DskipTests -Dmaven.test.skip=true -pl proxy -am \
 && cp proxy/target/cryoproxy.jar /cryoproxy.jar

FROM ${RUNTIME_IMAGE}
# A fixed numeric user, so that the image runs as non-root whatever users the base image has.
ARG UID=10001
RUN if command -v useradd >/dev/null 2>&1; then \
      groupadd --system --gid "${UID}" cryoproxy \
      && useradd --system --uid "${UID}" --gid "${UID}" --home-dir /opt/cryoproxy \
         --no-create-home --shell /usr/sbin/nologin cryoproxy; \
    fi \
 && mkdir -p /opt/cryoproxy /etc/cryoproxy
COPY --from=build /cryoproxy.jar /opt/cryoproxy/cryoproxy.jar
COPY deploy/cryoproxy/healthcheck.sh /opt/cryoproxy/healthcheck.sh
RUN chmod 0755 /opt/cryoproxy/healthcheck.sh && chmod 0644 /opt/cryoproxy/cryoproxy.jar
USER ${UID}:${UID}
WORKDIR /opt/cryoproxy
ENV HOME=/opt/cryoproxy \
    JAVA_TOOL_OPTIONS="-XX:MaxRAMPercentage=75 -XX:+ExitOnOutOfMemoryError"
# 6432: PostgreSQL clients; 9187: the admin endpoint (/metrics, /health/live, /health/ready).
EXPOSE 6432 9187
# /health/ready on the admin port (CRYOPROXY_ADMIN__PORT, default 9187), without curl or wget.
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
  CMD ["/opt/cryoproxy/healthcheck.sh"]
ENTRYPOINT ["java", "-jar", "/opt/cryoproxy/cryoproxy.jar"]
CMD ["run", "--config", "/etc/cryoproxy/cryoproxy.yaml"]
