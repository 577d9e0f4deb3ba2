package org.cryoprotect.demo;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.SecureRandom;
import java.time.Duration;
import java.util.HexFormat;
import java.util.concurrent.Callable;
import org.cryoprotect.embedded.OsUser;
import org.cryoprotect.embedded.PgCluster;
import org.cryoprotect.embedded.PgNode;
import org.cryoprotect.proxy.ProxyServer;
import org.cryoprotect.proxy.cli.Main;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

/**
 * {@code cryoproxy demo}: everything a newcomer needs to see the proxy work, without Docker. An
 * embedded PostgreSQL 18 primary and streaming replica, the migrations of {@code sql/} with the
 * CryoProtect data, and the proxy in transaction mode with read routing, the result cache, JWT
 * logins, audit and view refreshes on. It prints how to connect and runs until Ctrl-C, which stops
 * the proxy and both servers and removes their files.
 */
@Command(
    name = "demo",
    description =
        "Run the proxy on an embedded PostgreSQL 18 primary and replica with demo data, until"
            + " Ctrl-C.")
final class Demo implements Callable<Integer> {
  static final String DATABASE = "cryoprotect";
  static final String TOKEN_USER = "authenticator";

  @Option(names = "--port", description = "the proxy's port (default ${DEFAULT-VALUE})")
  int port = 6432;

  @Option(
      names = "--admin-port",
      description = "metrics and health endpoint port (default ${DEFAULT-VALUE})")
  int adminPort = 9187;

  @Option(
      names = "--molecules",
      description = "molecules to generate, with their properties etc. (default ${DEFAULT-VALUE})")
  int molecules = 10_000;

  @Option(
      names = "--no-cache",
      description = "leave the result cache off (bench/seeds.sh measures the database's work)")
  boolean noCache;

  private PgCluster cluster;
  private ProxyServer proxy;
  private Path work;

  @Override
  public Integer call() throws Exception {
    Runtime.getRuntime().addShutdownHook(new Thread(this::stop, "cryoproxy-demo-stop"));
    work = Files.createTempDirectory("cryoproxy-demo-");
    log("starting PostgreSQL (primary and streaming replica) ...");
    cluster = PgCluster.builder().replicas(1).auth("scram-sha-256").start();
    cluster.createDatabase(DATABASE);
    PgNode primary = cluster.primary();
    PgNode replica = cluster.replica(0);

    cryoproxy("keys", "generate", "--alg", "ES256", "--out", work.toString(), "--kid", "demo");
    Path migrateConfig = work.resolve("migrate.yaml");
    Files.writeString(migrateConfig, migrateYaml(primary));
    log("applying sql/migrations ...");
    cryoproxy(
        "migrate",
        "--config",
        migrateConfig.toString(),
        "--claims-key",
        work.resolve("claims.key").toString());

    StringBuilder users = new StringBuilder();
    StringBuilder passwords = new StringBuilder();
    for (String role : new String[] {"anon", "authenticated", "service_read", "service_write"}) {
      String password = randomHex();
      users.append('"').append(role).append("\" \"").append(password).append("\"\n");
      passwords.append("ALTER ROLE ").append(role).append(" PASSWORD '").append(password);
      passwords.append("';");
    }
    Files.writeString(work.resolve("users.txt"), users);
    primary.sql(DATABASE, passwords.toString());
    log("generating " + molecules + " molecules with properties, toxicity results ...");
    primary.sql(DATABASE, "SELECT cryoprotect.generate(" + molecules + ")");
    cluster.awaitReplication();

    Path config = work.resolve("cryoproxy.yaml");
    Files.writeString(config, proxyYaml(primary, replica));
    proxy = ProxyServer.start(config);
    String token =
        cryoproxy(
                "token",
                "issue",
                "--key",
                work.resolve("demo.jwk.json").toString(),
                "--role",
                "service_role",
                "--scope",
                "cryo:read",
                "--sub",
                "demo",
                "--ttl",
                "8h",
                "--iss",
                "cryoproxy",
                "--aud",
                "cryoprotect")
            .strip();
    String url = "jdbc:postgresql://127.0.0.1:" + proxy.address().getPort() + "/" + DATABASE;
    System.out.println(
        String.join(
            "\n",
            "",
            "CryoProxy demo is running. PostgreSQL "
                + primary.serverVersion()
                + ": primary 127.0.0.1:"
                + primary.port()
                + ", replica 127.0.0.1:"
                + replica.port()
                + " (superuser "
                + PgCluster.SUPERUSER
                + "/"
                + PgCluster.SUPERUSER_PASSWORD
                + ")",
            "Files: " + work + " and " + cluster.rootDir(),
            "JDBC URL: " + url + "?user=" + TOKEN_USER,
            "Token (password of " + TOKEN_USER + "; service_role, scope cryo:read, 8 h): " + token,
            "psql: PGPASSWORD="
                + token
                + " psql -h 127.0.0.1 -p "
                + proxy.address().getPort()
                + " -U "
                + TOKEN_USER
                + " "
                + DATABASE
                + " -c 'SELECT name FROM molecules LIMIT 5'",
            "Metrics: http://127.0.0.1:" + proxy.adminAddress().getPort() + "/metrics",
            "Admin: " + "http://127.0.0.1:" + proxy.adminAddress().getPort() + "/health/ready",
            "Ctrl-C stops the proxy and both servers and removes these files.",
            ""));
    System.out.flush();
    proxy.awaitTermination();
    return 0;
  }

  private static String migrateYaml(PgNode primary) {
    return "migrate: { user: "
        + PgCluster.SUPERUSER
        + ", password: "
        + PgCluster.SUPERUSER_PASSWORD
        + " }\n"
        + "databases:\n  "
        + DATABASE
        + ":\n    dbname: "
        + DATABASE
        + "\n    primary: { host: 127.0.0.1, port: "
        + primary.port()
        + " }\n";
  }

  /** Transaction pooling, routing, the cache (unless --no-cache), JWT logins, audit and views. */
  private String proxyYaml(PgNode primary, PgNode replica) {
    return String.join(
        "\n",
        "listen: { host: 127.0.0.1, port: " + port + " }",
        "admin: { host: 127.0.0.1, port: " + adminPort + " }",
        "pool: { mode: transaction, size: 10 }",
        "auth:",
        "  type: scram-sha-256",
        "  users_file: users.txt",
        "  jwt:",
        "    users: " + TOKEN_USER,
        "    allow_plaintext: loopback",
        "    jwks_file: jwks.json",
        "    algorithms: ES256",
        "    issuer: cryoproxy",
        "    audience: cryoprotect",
        "    claims_key_file: claims.key",
        "    roles:",
        "      anon: anon",
        "      authenticated: authenticated",
        "      service_role:",
        "        - { scope: \"cryo:write\", role: service_write }",
        "        - { scope: \"cryo:read\", role: service_read }",
        "databases:",
        "  " + DATABASE + ":",
        "    dbname: " + DATABASE,
        "    primary: { host: 127.0.0.1, port: " + primary.port() + " }",
        "    replicas: [ { host: 127.0.0.1, port: " + replica.port() + " } ]",
        "health: { user: "
            + PgCluster.SUPERUSER
            + ", password: "
            + PgCluster.SUPERUSER_PASSWORD
            + " }",
        "audit: { roles: \"service_read, service_write\", journal_dir: audit-journal }",
        "cache:",
        "  enabled: " + !noCache,
        "  rules:",
        "    - tables: [public.molecules, public.molecular_properties, public.public_molecules,",
        "               public.toxicity_summary, public.toxicity_assays, public.toxicity_endpoints]",
        "      ttl: 60s",
        "refresh_views:",
        "  - { database: " + DATABASE + ", view: public.toxicity_summary, every: 1m }",
        "  - { database: " + DATABASE + ", view: public.public_molecules, every: 5m }",
        "");
  }

  /** Runs a {@code cryoproxy} command in this JVM; its output is returned, or shown if it fails. */
  private static String cryoproxy(String... args) {
    PrintStream stdout = System.out;
    ByteArrayOutputStream captured = new ByteArrayOutputStream();
    int exit;
    synchronized (System.class) {
      System.setOut(new PrintStream(captured, true, StandardCharsets.UTF_8));
      try {
        exit = new CommandLine(new Main()).execute(args);
      } finally {
        System.setOut(stdout);
      }
    }
    String output = captured.toString(StandardCharsets.UTF_8);
    if (exit != 0) {
      throw new IllegalStateException(
          "cryoproxy " + String.join(" ", args) + " failed (exit " + exit + "):\n" + output);
    }
    return output;
  }

  private void stop() {
    log("stopping ...");
    if (proxy != null) {
      proxy.shutdown(Duration.ofSeconds(5));
    }
    if (cluster != null) {
      cluster.close();
    }
    if (work != null) {
      OsUser.deleteRecursively(work);
    }
  }

  private static String randomHex() {
    byte[] bytes = new byte[16];
    new SecureRandom().nextBytes(bytes);
    return HexFormat.of().formatHex(bytes);
  }

  private static void log(String line) {
    System.err.println("cryoproxy demo: " + line);
  }
}
