package org.cryoprotect.proxy.config;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Map;
import org.cryoprotect.proxy.config.ProxyConfig.AuthType;
import org.cryoprotect.proxy.config.ProxyConfig.Endpoint;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class ConfigLoaderTest {
  @TempDir Path dir;

  private Path write(String yaml) throws IOException {
    Path file = dir.resolve("cryoproxy.yaml");
    Files.writeString(file, yaml);
    return file;
  }

  private static final String MINIMAL =
      """
      databases:
        app:
          primary: { host: db.internal }
      """;

  @Test
  void minimalConfigGetsDefaults() throws Exception {
    ProxyConfig config = ConfigLoader.load(write(MINIMAL), Map.of());
    assertThat(config.listen()).isEqualTo(new Endpoint("127.0.0.1", 6432));
    assertThat(config.auth().type()).isEqualTo(AuthType.TRUST);
    assertThat(config.databases().get("app").dbname()).isEqualTo("app");
    assertThat(config.databases().get("app").primary())
        .isEqualTo(new Endpoint("db.internal", 5432));
    assertThat(config.limits().clientLoginTimeout()).isEqualTo(Duration.ofSeconds(15));
  }

  @Test
  void exampleFileShippedWithTheJarIsValid() throws Exception {
    Path example = Path.of("src/main/resources/cryoproxy.example.yaml");
    Path copy = dir.resolve("example.yaml");
    Files.copy(example, copy);
    Files.writeString(dir.resolve("userlist.txt"), "\"app\" \"secret\"\n");
    ProxyConfig config = ConfigLoader.load(copy, Map.of());
    assertThat(config.databases()).containsKey("app");
  }

  @Test
  void noPasswordReachesToString() throws Exception {
    ProxyConfig config =
        ConfigLoader.load(
            write(
                """
                auth: { type: md5, auth_query: "SELECT 1", auth_user: a, auth_password: pw-auth }
                health: { user: h, password: pw-health }
                migrate: { user: m, password: pw-migrate }
                databases:
                  app:
                    primary: { host: db.internal }
                    user: owner
                    password: pw-database
                """),
            Map.of());
    assertThat(config.toString())
        .contains("owner", "authUser=a")
        .doesNotContain("pw-auth", "pw-health", "pw-migrate", "pw-database");
    assertThat(config.databases().get("app").password()).isEqualTo("pw-database");
  }

  @Test
  void refreshViewsNameAConfiguredDatabase() throws Exception {
    assertThat(ConfigLoader.load(write(MINIMAL), Map.of()).refreshViews()).isEmpty();
    String db = ConfigLoader.load(write(MINIMAL), Map.of()).databases().keySet().iterator().next();
    ProxyConfig config =
        ConfigLoader.load(
            write(
                MINIMAL
                    + "refresh_views:\n  - { database: "
                    + db
                    + ", view: public.toxicity_summary, every: 30s }\n"),
            Map.of());
    assertThat(config.refreshViews().get(0).every()).isEqualTo(java.time.Duration.ofSeconds(30));
    assertThatThrownBy(
            () ->
                ConfigLoader.load(
                    write(MINIMAL + "refresh_views:\n  - { database: nope, view: public.v }\n"),
                    Map.of()))
        .hasMessageContaining("refresh_views[0].database");
  }

  @Test
  void theCacheSectionIsReadAndChecked() throws Exception {
    ProxyConfig off = ConfigLoader.load(write(MINIMAL), Map.of());
    assertThat(off.cache().enabled()).isFalse();
    ProxyConfig on =
        ConfigLoader.load(
            write(
                MINIMAL
                    + "cache:\n  enabled: true\n  max_size: 64mb\n  max_entry_size: 256kb\n"
                    + "  rules:\n    - { tables: [Public.Molecules, '\"s\".\"Mixed\"'], ttl: 30s }\n"),
            Map.of());
    assertThat(on.cache().enabled()).isTrue();
    assertThat(on.cache().maxSize()).isEqualTo(64L << 20);
    assertThat(on.cache().maxEntrySize()).isEqualTo(256L << 10);
    assertThat(on.cache().rules().get(0).tables()).containsExactly("public.molecules", "s.Mixed");
    assertThat(on.cache().rules().get(0).ttl()).isEqualTo(java.time.Duration.ofSeconds(30));
    assertThatThrownBy(
            () ->
                ConfigLoader.load(
                    write(MINIMAL + "cache:\n  rules:\n    - { tables: [molecules] }\n"), Map.of()))
        .hasMessageContaining("cache.rules[0].tables");
    assertThatThrownBy(
            () ->
                ConfigLoader.load(
                    write(MINIMAL + "cache: { max_size: 1mb, max_entry_size: 2mb }\n"), Map.of()))
        .hasMessageContaining("cache.max_entry_size");
  }

  @Test
  void unknownKeyIsNamed() throws IOException {
    Path file = write(MINIMAL + "    replica: []\n");
    assertThatThrownBy(() -> ConfigLoader.load(file, Map.of()))
        .isInstanceOf(ConfigException.class)
        .hasMessage("databases.app.replica: unknown key");
  }

  @Test
  void badValuesNameTheirKey() throws IOException {
    assertThatThrownBy(
            () -> ConfigLoader.load(write(MINIMAL + "listen: { port: abc }\n"), Map.of()))
        .hasMessageStartingWith("listen.port: expected an integer");
    assertThatThrownBy(
            () ->
                ConfigLoader.load(
                    write(MINIMAL + "limits: { client_login_timeout: soon }\n"), Map.of()))
        .hasMessageStartingWith("limits.client_login_timeout: expected a duration");
    assertThatThrownBy(
            () -> ConfigLoader.load(write(MINIMAL + "auth: { type: kerberos }\n"), Map.of()))
        .hasMessage("auth.type: 'kerberos' is not one of trust, md5, scram-sha-256");
    assertThatThrownBy(() -> ConfigLoader.load(write(MINIMAL + "auth: { type: md5 }\n"), Map.of()))
        .hasMessageStartingWith("auth.type:");
    assertThatThrownBy(
            () ->
                ConfigLoader.load(
                    write(MINIMAL + "tls: { client: { mode: require, key_file: nope.key } }\n"),
                    Map.of()))
        .hasMessageStartingWith("tls.client.key_file: cannot read file");
    assertThatThrownBy(() -> ConfigLoader.load(write("databases: {}\n"), Map.of()))
        .hasMessageStartingWith("databases: at least one");
    assertThatThrownBy(
            () -> ConfigLoader.load(write("databases:\n  app: { dbname: x }\n"), Map.of()))
        .hasMessage("databases.app.primary: is required");
  }

  @Test
  void environmentOverridesKeysWithDoubleUnderscores() throws Exception {
    ProxyConfig config =
        ConfigLoader.load(
            write(MINIMAL),
            Map.of(
                "CRYOPROXY_LISTEN__PORT", "7432",
                "CRYOPROXY_LIMITS__MAX_MESSAGE_SIZE", "4096",
                "CRYOPROXY_DATABASES__APP__PRIMARY__HOST", "10.0.0.5",
                "CRYOPROXY_DATABASES__APP__REPLICAS__0__HOST", "10.0.0.6",
                "CRYOPROXY_OPTS", "-Xmx1g"));
    assertThat(config.listen().port()).isEqualTo(7432);
    assertThat(config.limits().maxMessageSize()).isEqualTo(4096);
    assertThat(config.databases().get("app").primary().host()).isEqualTo("10.0.0.5");
    assertThat(config.databases().get("app").replicas())
        .containsExactly(new Endpoint("10.0.0.6", 5432));
  }

  @Test
  void environmentOverrideWithTypoIsNamed() throws IOException {
    Path file = write(MINIMAL);
    assertThatThrownBy(() -> ConfigLoader.load(file, Map.of("CRYOPROXY_LISTEN__PROT", "1")))
        .hasMessage("listen.prot: unknown key");
  }

  @Test
  void healthSectionHasDefaultsAndParses() throws Exception {
    ProxyConfig.Health defaults = ConfigLoader.load(write(MINIMAL), Map.of()).health();
    assertThat(defaults.interval()).isEqualTo(Duration.ofSeconds(2));
    assertThat(defaults.timeout()).isEqualTo(Duration.ofSeconds(3));
    assertThat(defaults.user()).isNull();
    assertThat(defaults.password()).isNull();

    ProxyConfig.Health health =
        ConfigLoader.load(
                write(
                    MINIMAL
                        + "health: { interval: 500ms, timeout: 2s, user: probe,"
                        + " password: s3cret }\n"),
                Map.of())
            .health();
    assertThat(health.interval()).isEqualTo(Duration.ofMillis(500));
    assertThat(health.timeout()).isEqualTo(Duration.ofSeconds(2));
    assertThat(health.user()).isEqualTo("probe");
    assertThat(health.password()).isEqualTo("s3cret");
    assertThat(health.toString()).doesNotContain("s3cret");

    ProxyConfig fromEnv =
        ConfigLoader.load(write(MINIMAL), Map.of("CRYOPROXY_HEALTH__INTERVAL", "250ms"));
    assertThat(fromEnv.health().interval()).isEqualTo(Duration.ofMillis(250));
  }

  @Test
  void badHealthValuesNameTheirKey() throws IOException {
    assertThatThrownBy(
            () -> ConfigLoader.load(write(MINIMAL + "health: { interval: often }\n"), Map.of()))
        .hasMessageStartingWith("health.interval: expected a duration");
    assertThatThrownBy(
            () -> ConfigLoader.load(write(MINIMAL + "health: { interval: 10ms }\n"), Map.of()))
        .hasMessage("health.interval: must be between 100ms and 1h");
    assertThatThrownBy(
            () -> ConfigLoader.load(write(MINIMAL + "health: { timeout: 100ms }\n"), Map.of()))
        .hasMessage("health.timeout: must be between 250ms and 1m");
    assertThatThrownBy(() -> ConfigLoader.load(write(MINIMAL + "health: { user: '' }\n"), Map.of()))
        .hasMessage("health.user: must not be empty");
    assertThatThrownBy(
            () -> ConfigLoader.load(write(MINIMAL + "health: { intervall: 1s }\n"), Map.of()))
        .hasMessage("health.intervall: unknown key");
    assertThatThrownBy(() -> ConfigLoader.load(write(MINIMAL + "health: 5s\n"), Map.of()))
        .hasMessage("health: expected a mapping");
  }

  @Test
  void routingAndResilienceHaveDefaultsAndParse() throws Exception {
    ProxyConfig plain = ConfigLoader.load(write(MINIMAL), Map.of());
    assertThat(plain.databases().get("app").routing().enabled()).isFalse(); // no replicas
    assertThat(plain.resilience().openFor()).isEqualTo(Duration.ofSeconds(5));
    assertThat(plain.resilience().retryAttempts()).isEqualTo(4);

    ProxyConfig config =
        ConfigLoader.load(
            write(
                MINIMAL
                    + "    replicas: [ { host: r1 } ]\n"
                    + "    routing: { max_lag: 2s, max_lag_bytes: 512kB, read_your_writes: off }\n"
                    + "resilience:\n"
                    + "  breaker: { failure_rate: 25, open_for: 800ms, half_open_calls: 1 }\n"
                    + "  retry: { attempts: 2, backoff: 10ms, max_backoff: 40ms }\n"),
            Map.of());
    ProxyConfig.Routing routing = config.databases().get("app").routing();
    assertThat(routing.enabled()).isTrue();
    assertThat(routing.maxLag()).isEqualTo(Duration.ofSeconds(2));
    assertThat(routing.maxLagBytes()).isEqualTo(512 * 1024);
    assertThat(routing.readYourWrites()).isEqualTo(ProxyConfig.ReadYourWrites.OFF);
    assertThat(config.resilience().failureRate()).isEqualTo(25);
    assertThat(config.resilience().openFor()).isEqualTo(Duration.ofMillis(800));
    assertThat(config.resilience().retryMaxBackoff()).isEqualTo(Duration.ofMillis(40));
  }

  @Test
  void badRoutingAndResilienceValuesNameTheirKey() throws IOException {
    assertThatThrownBy(
            () ->
                ConfigLoader.load(
                    write(MINIMAL + "    routing: { read_your_writes: always }\n"), Map.of()))
        .hasMessage("databases.app.routing.read_your_writes: 'always' is not one of off, session");
    assertThatThrownBy(
            () -> ConfigLoader.load(write(MINIMAL + "    routing: { enabled: maybe }\n"), Map.of()))
        .hasMessage("databases.app.routing.enabled: expected true or false, got 'maybe'");
    assertThatThrownBy(
            () ->
                ConfigLoader.load(
                    write(MINIMAL + "    routing: { max_lag_bytes: lots }\n"), Map.of()))
        .hasMessageStartingWith("databases.app.routing.max_lag_bytes: expected a size");
    assertThatThrownBy(
            () ->
                ConfigLoader.load(
                    write(MINIMAL + "resilience: { breaker: { failure_rate: 0 } }\n"), Map.of()))
        .hasMessage("resilience.breaker.failure_rate: must be between 1 and 100");
    assertThatThrownBy(
            () ->
                ConfigLoader.load(
                    write(MINIMAL + "resilience: { retry: { backoff: 1s, max_backoff: 10ms } }\n"),
                    Map.of()))
        .hasMessage("resilience.retry.max_backoff: must be at least retry.backoff (> 0)");
    assertThatThrownBy(
            () -> ConfigLoader.load(write(MINIMAL + "resilience: { breakr: {} }\n"), Map.of()))
        .hasMessage("resilience.breakr: unknown key");
  }

  @Test
  void serverTlsModesHaveLibpqNames() {
    assertThat(ProxyConfig.ServerTlsMode.VERIFY_FULL.sslmode()).isEqualTo("verify-full");
    assertThat(ProxyConfig.ServerTlsMode.DISABLE.sslmode()).isEqualTo("disable");
  }

  @Test
  void invalidYamlIsReported() throws IOException {
    assertThatThrownBy(() -> ConfigLoader.load(write("listen: [\n"), Map.of()))
        .hasMessageContaining("invalid YAML");
  }
}
