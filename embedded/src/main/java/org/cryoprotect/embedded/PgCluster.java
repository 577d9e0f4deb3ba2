package org.cryoprotect.embedded;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.nio.file.attribute.PosixFilePermissions;
import java.sql.Connection;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;
import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;

/**
 * A throwaway PostgreSQL cluster: one primary and zero or more streaming replicas, listening on
 * 127.0.0.1 with free ports, everything under one temp directory that {@link #close()} deletes.
 *
 * <pre>{@code
 * try (PgCluster pg = PgCluster.builder().replicas(1).tls(true).auth("scram-sha-256").start()) {
 *   pg.createUser("app", "secret");
 *   try (Connection c = pg.replica(0).connect("postgres", "app", "secret")) { ... }
 * }
 * }</pre>
 */
public final class PgCluster implements AutoCloseable {

  public static final String SUPERUSER = "postgres";
  public static final String SUPERUSER_PASSWORD = "postgres";
  private static final Set<String> AUTH_METHODS =
      Set.of("trust", "password", "md5", "scram-sha-256");
  private static final Duration STREAMING_TIMEOUT = Duration.ofSeconds(60);

  private final Builder options;
  private final Path rootDir;
  private final Path binDir;
  private TestCerts certs;
  private final List<PgNode> nodes = new ArrayList<>();
  private final Thread shutdownHook = new Thread(this::destroy, "cryoproxy-pg-cleanup");
  private volatile boolean closed;
  private volatile int serverVersionNum;

  private PgCluster(Builder options) throws IOException {
    this.options = options;
    this.binDir = options.binDir != null ? options.binDir : PgBinaries.binDir();
    this.rootDir = Files.createTempDirectory("cryoproxy-pgc-");
  }

  public static Builder builder() {
    return new Builder();
  }

  public PgNode primary() {
    return nodes.get(0);
  }

  /** Replica {@code i}, counting from 0. */
  public PgNode replica(int i) {
    return nodes.get(i + 1);
  }

  public List<PgNode> replicas() {
    return nodes.subList(1, nodes.size());
  }

  public List<PgNode> nodes() {
    return List.copyOf(nodes);
  }

  public Path binDir() {
    return binDir;
  }

  public Path rootDir() {
    return rootDir;
  }

  public String authMethod() {
    return options.auth;
  }

  /** The certificates the servers present, or null without TLS; clients trust {@code caCert()}. */
  public TestCerts certs() {
    return certs;
  }

  /** pgJDBC properties for a TLS connection that trusts this cluster's CA. */
  public Properties sslProperties(String sslmode) {
    if (certs == null) {
      throw new IllegalStateException("cluster was started without TLS");
    }
    Properties props = new Properties();
    props.setProperty("ssl", "true");
    props.setProperty("sslmode", sslmode);
    props.setProperty("sslrootcert", certs.caCert().toString());
    return props;
  }

  /** e.g. 180006 or 150013; from the running primary, cached. */
  public int serverVersionNum() {
    if (serverVersionNum == 0) {
      serverVersionNum = Integer.parseInt(primary().queryString("SHOW server_version_num"));
    }
    return serverVersionNum;
  }

  public List<List<String>> sql(String sql) {
    return primary().sql(sql);
  }

  public void createDatabase(String name) {
    primary().sql("CREATE DATABASE " + PgConf.quoteIdent(name));
  }

  public void createDatabase(String name, String owner) {
    primary()
        .sql("CREATE DATABASE " + PgConf.quoteIdent(name) + " OWNER " + PgConf.quoteIdent(owner));
  }

  /**
   * Creates a login role whose password is stored the way the cluster's auth method needs it (MD5
   * for md5, SCRAM otherwise). {@code options} are appended verbatim, e.g. "SUPERUSER".
   */
  public void createUser(String name, String password, String... options) {
    primary()
        .sql(
            "SET password_encryption = '"
                + PgConf.passwordEncryption(this.options.auth)
                + "'; CREATE ROLE "
                + PgConf.quoteIdent(name)
                + " LOGIN PASSWORD "
                + PgConf.quote(password)
                + " "
                + String.join(" ", options));
  }

  /** Waits until every running replica has replayed everything the primary has written so far. */
  public void awaitReplication() {
    // With synchronous_commit=off recent commits may still sit in WAL buffers, unsent. A
    // synchronous commit flushes everything before it, but only if its transaction wrote WAL
    // (RecordTransactionCommit skips the flush otherwise): a transactional logical message does,
    // without touching any table.
    String lsn;
    try (Connection c = primary().connect();
        Statement st = c.createStatement()) {
      st.execute("SET synchronous_commit = on");
      st.execute("SELECT pg_logical_emit_message(true, 'cryoproxy-harness', 'sync')");
      try (ResultSet rs = st.executeQuery("SELECT pg_current_wal_lsn()")) {
        rs.next();
        lsn = rs.getString(1);
      }
    } catch (SQLException e) {
      throw new IllegalStateException("cannot read the primary's WAL position", e);
    }
    for (PgNode replica : replicas()) {
      String check = "SELECT pg_last_wal_replay_lsn() >= '" + lsn + "'::pg_lsn";
      poll(replica + " to replay " + lsn, () -> "t".equals(replica.queryString(check)));
    }
  }

  /** Tail of every node's server log, for failure reports. */
  public String logTails(int lines) {
    StringBuilder out = new StringBuilder();
    for (PgNode node : nodes) {
      out.append("----- ").append(node).append(" ").append(node.logFile()).append(" -----\n");
      out.append(node.logTail(lines)).append('\n');
    }
    return out.toString();
  }

  /** Stops every server and deletes the cluster's directory; safe to call twice. */
  @Override
  public void close() {
    try {
      Runtime.getRuntime().removeShutdownHook(shutdownHook);
    } catch (IllegalStateException | IllegalArgumentException ignored) {
      // JVM already shutting down (the hook runs destroy) or hook never registered.
    }
    destroy();
  }

  private synchronized void destroy() {
    if (closed) {
      return;
    }
    closed = true;
    // Replicas first so they do not spend the primary's shutdown reconnecting and logging noise.
    for (int i = nodes.size() - 1; i >= 0; i--) {
      PgNode node = nodes.get(i);
      try {
        node.stop("immediate");
      } catch (RuntimeException e) {
        node.kill();
      }
    }
    OsUser.deleteRecursively(rootDir);
  }

  private void create() {
    Runtime.getRuntime().addShutdownHook(shutdownHook);
    try {
      if (options.tls) {
        certs =
            options.certs != null ? options.certs : TestCerts.generate(rootDir.resolve("certs"));
      }
      Files.writeString(rootDir.resolve("pwfile"), SUPERUSER_PASSWORD + "\n");
      if (certs != null) {
        // PostgreSQL insists on owning a 0600 key, so the servers get their own copy.
        Path tls = Files.createDirectories(rootDir.resolve("tls"));
        Files.copy(
            certs.serverCert(), tls.resolve("server.crt"), StandardCopyOption.REPLACE_EXISTING);
        Files.copy(
            certs.serverKey(), tls.resolve("server.key"), StandardCopyOption.REPLACE_EXISTING);
        Files.copy(certs.caCert(), tls.resolve("ca.crt"), StandardCopyOption.REPLACE_EXISTING);
        Files.setPosixFilePermissions(
            tls.resolve("server.key"), PosixFilePermissions.fromString("rw-------"));
      }
      OsUser.chown(rootDir);

      PgNode primary = new PgNode(this, "primary", false);
      nodes.add(primary);
      Duration initdbTimeout = Duration.ofMinutes(3);
      OsUser.run(
          List.of(
              binDir.resolve("initdb").toString(),
              "-D",
              primary.dataDir().toString(),
              "-U",
              SUPERUSER,
              "--pwfile=" + rootDir.resolve("pwfile"),
              "--auth=trust",
              "--no-locale",
              "--encoding=UTF8",
              "--no-sync"),
          rootDir,
          initdbTimeout);
      Path tlsDir = certs == null ? null : rootDir.resolve("tls");
      Files.writeString(
          primary.dataDir().resolve("postgresql.conf"),
          PgConf.shared(options, rootDir, tlsDir),
          StandardOpenOption.APPEND);
      Files.writeString(primary.dataDir().resolve("pg_hba.conf"), PgConf.hba(options));
      OsUser.chown(primary.dataDir());

      // No pg_basebackup in the zonky build: a copy of a cleanly shut down, never started primary
      // is a valid base backup, and the replica streams from the primary's first checkpoint on.
      for (int i = 0; i < options.replicas; i++) {
        PgNode replica = new PgNode(this, "replica-" + i, true);
        OsUser.run(
            List.of("cp", "-a", primary.dataDir().toString(), replica.dataDir().toString()),
            rootDir,
            initdbTimeout);
        nodes.add(replica);
      }
      primary.writeNodeConf(FreePorts.next());
      primary.start(true);
      for (PgNode replica : replicas()) {
        replica.writeNodeConf(FreePorts.next());
        replica.start(true);
      }
      String streaming = "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'";
      poll(
          options.replicas + " replicas to stream",
          () -> Integer.parseInt(primary.queryString(streaming)) == options.replicas);
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
  }

  private static void poll(String what, java.util.function.BooleanSupplier condition) {
    long deadline = System.nanoTime() + STREAMING_TIMEOUT.toNanos();
    RuntimeException last = null;
    while (System.nanoTime() < deadline) {
      try {
        if (condition.getAsBoolean()) {
          return;
        }
      } catch (RuntimeException e) {
        last = e;
      }
      try {
        Thread.sleep(50);
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
        throw new IllegalStateException("interrupted waiting for " + what, e);
      }
    }
    throw new IllegalStateException("timed out waiting for " + what, last);
  }

  /** Reusable: every {@link #start()} makes a new cluster. */
  public static final class Builder {
    int replicas;
    boolean tls;
    boolean requireTls;
    TestCerts certs;
    String auth = "trust";
    Path binDir;
    final Map<String, String> settings = new LinkedHashMap<>();

    private Builder() {}

    public Builder replicas(int replicas) {
      if (replicas < 0) {
        throw new IllegalArgumentException("replicas must be >= 0: " + replicas);
      }
      this.replicas = replicas;
      return this;
    }

    /** TLS with freshly generated certificates (see {@link TestCerts}). */
    public Builder tls(boolean tls) {
      this.tls = tls;
      return this;
    }

    /** TLS with the caller's certificates, e.g. to share one CA with the proxy under test. */
    public Builder tls(TestCerts certs) {
      this.tls = true;
      this.certs = certs;
      return this;
    }

    /** Reject non-TLS TCP connections (hostssl lines only in pg_hba.conf); implies TLS. */
    public Builder requireTls(boolean requireTls) {
      this.requireTls = requireTls;
      this.tls |= requireTls;
      return this;
    }

    /** Method for TCP connections: trust (default), password, md5 or scram-sha-256. */
    public Builder auth(String method) {
      if (!AUTH_METHODS.contains(method)) {
        throw new IllegalArgumentException(
            "unsupported auth method " + method + "; use " + AUTH_METHODS);
      }
      this.auth = method;
      return this;
    }

    /** A postgresql.conf setting; applied after the harness defaults, so it overrides them. */
    public Builder setting(String name, String value) {
      settings.put(name, value);
      return this;
    }

    public Builder settings(Map<String, String> more) {
      settings.putAll(more);
      return this;
    }

    /** Overrides {@code PG_BIN} and the bundled binaries. */
    public Builder binDir(Path binDir) {
      this.binDir = binDir;
      return this;
    }

    public PgCluster start() {
      PgCluster cluster;
      try {
        cluster = new PgCluster(copy());
      } catch (IOException e) {
        throw new UncheckedIOException(e);
      }
      try {
        cluster.create();
        return cluster;
      } catch (RuntimeException e) {
        String logs = cluster.nodes.isEmpty() ? "" : "\n" + cluster.logTails(80);
        cluster.close();
        throw new IllegalStateException(
            "PostgreSQL cluster failed to start: " + e.getMessage() + logs, e);
      }
    }

    /** The cluster keeps its own copy, so reusing this builder cannot change it. */
    private Builder copy() {
      Builder copy = new Builder();
      copy.replicas(replicas).tls(tls).requireTls(requireTls).auth(auth).binDir(binDir);
      copy.certs = certs;
      copy.settings.putAll(settings);
      return copy;
    }
  }
}
