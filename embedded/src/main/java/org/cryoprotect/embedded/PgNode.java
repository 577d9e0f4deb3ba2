package org.cryoprotect.embedded;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.OptionalLong;
import java.util.Properties;
import java.util.stream.Collectors;
import java.util.stream.Stream;

/** One PostgreSQL server of a {@link PgCluster}: the primary or a streaming replica. */
public final class PgNode {

  public static final String HOST = "127.0.0.1";
  private static final Duration PG_CTL_TIMEOUT = Duration.ofSeconds(90);

  private final PgCluster cluster;
  private final String name;
  private final boolean replica;
  private final Path dataDir;
  private final Path logFile;
  private volatile int port;
  private volatile boolean paused;

  PgNode(PgCluster cluster, String name, boolean replica) {
    this.cluster = cluster;
    this.name = name;
    this.replica = replica;
    this.dataDir = cluster.rootDir().resolve(name);
    this.logFile = cluster.rootDir().resolve(name + ".log");
  }

  public String name() {
    return name;
  }

  public boolean isReplica() {
    return replica;
  }

  public String host() {
    return HOST;
  }

  public int port() {
    return port;
  }

  public Path binDir() {
    return cluster.binDir();
  }

  public Path dataDir() {
    return dataDir;
  }

  public Path logFile() {
    return logFile;
  }

  public String jdbcUrl() {
    return jdbcUrl("postgres");
  }

  public String jdbcUrl(String database) {
    return "jdbc:postgresql://" + HOST + ":" + port + "/" + database;
  }

  /** Superuser connection to database {@code postgres}. */
  public Connection connect() throws SQLException {
    return connect("postgres");
  }

  public Connection connect(String database) throws SQLException {
    return connect(database, PgCluster.SUPERUSER, PgCluster.SUPERUSER_PASSWORD);
  }

  public Connection connect(String database, String user, String password) throws SQLException {
    Properties props = new Properties();
    props.setProperty("user", user);
    props.setProperty("password", password);
    return connect(database, props);
  }

  /** {@code props} are pgJDBC connection properties, e.g. from {@link PgCluster#sslProperties}. */
  public Connection connect(String database, Properties props) throws SQLException {
    Properties all = new Properties();
    all.setProperty("connectTimeout", "10");
    all.putAll(props);
    return DriverManager.getConnection(jdbcUrl(database), all);
  }

  /**
   * Runs {@code sql} as superuser in database {@code postgres} and returns the rows of the last
   * result set it produced (empty for commands), every value as text.
   */
  public List<List<String>> sql(String sql) {
    return sql("postgres", sql);
  }

  public List<List<String>> sql(String database, String sql) {
    try (Connection c = connect(database);
        Statement st = c.createStatement()) {
      List<List<String>> rows = List.of();
      boolean isResultSet = st.execute(sql);
      while (isResultSet || st.getUpdateCount() != -1) {
        if (isResultSet) {
          try (ResultSet rs = st.getResultSet()) {
            rows = readRows(rs);
          }
        }
        isResultSet = st.getMoreResults();
      }
      return rows;
    } catch (SQLException e) {
      throw new IllegalStateException(name + ": " + sql + ": " + e.getMessage(), e);
    }
  }

  /** First column of the first row, or null when there is none. */
  public String queryString(String sql) {
    List<List<String>> rows = sql(sql);
    return rows.isEmpty() || rows.get(0).isEmpty() ? null : rows.get(0).get(0);
  }

  /** {@code server_version} as the server reports it, e.g. "18.6" or "15.13 (Debian ...)". */
  public String serverVersion() {
    return queryString("SHOW server_version");
  }

  /** No-op when already running. */
  public void start() {
    if (!isRunning()) {
      start(false);
    }
  }

  /** Fast shutdown (rolls back open transactions, closes connections); no-op when not running. */
  public void stop() {
    stop("fast");
  }

  /** {@code mode} is a pg_ctl shutdown mode: smart, fast or immediate. */
  public void stop(String mode) {
    if (!isRunning()) {
      return;
    }
    // A stopped process cannot act on the shutdown signal; pg_ctl would wait until it times out.
    resume();
    pgCtl("-m", mode, "stop");
  }

  public void restart() {
    stop();
    start();
  }

  /**
   * SIGKILL to the postmaster and all its children at once, like the host losing power: the next
   * {@link #start()} runs crash recovery. Killing only the postmaster would leave orphaned backends
   * attached to shared memory, and PostgreSQL would refuse to start until they were gone.
   */
  public void kill() {
    OptionalLong pid = pid();
    if (pid.isEmpty()) {
      return;
    }
    List<Long> all = processTree(pid.getAsLong());
    all.forEach(p -> OsUser.signal(p, "KILL"));
    long deadline = System.nanoTime() + Duration.ofSeconds(15).toNanos();
    while (all.stream().anyMatch(OsUser::isRunning)) {
      if (System.nanoTime() > deadline) {
        throw new IllegalStateException(name + ": processes survived SIGKILL: " + all);
      }
      sleep(20);
    }
    paused = false;
    // The dead postmaster lingers as a zombie until init reaps it, and PostgreSQL takes a lock
    // file naming a pid that still exists for "another postmaster is running". Give init a moment,
    // then remove the data directory and socket lock files a real crash would leave stale anyway.
    long reapDeadline = System.nanoTime() + Duration.ofSeconds(2).toNanos();
    while (Files.exists(Path.of("/proc", pid.getAsLong() + ""))
        && System.nanoTime() < reapDeadline) {
      sleep(20);
    }
    deleteQuietly(dataDir.resolve("postmaster.pid"));
    deleteQuietly(cluster.rootDir().resolve(".s.PGSQL." + port + ".lock"));
  }

  /**
   * SIGSTOP to the postmaster and its children: connections stay open but nothing answers, like a
   * frozen VM or a network partition that drops nothing.
   */
  public void pause() {
    pid().ifPresent(pid -> processTree(pid).forEach(p -> OsUser.signal(p, "STOP")));
    paused = pid().isPresent();
  }

  public void resume() {
    if (paused) {
      pid().ifPresent(pid -> processTree(pid).forEach(p -> OsUser.signal(p, "CONT")));
      paused = false;
    }
  }

  /** Ends recovery on a replica; it becomes a primary on a new timeline. */
  public void promote() {
    pgCtl("promote");
  }

  /** The postmaster pid from {@code postmaster.pid}, if the file exists. */
  public OptionalLong pid() {
    try {
      Path file = dataDir.resolve("postmaster.pid");
      if (!Files.exists(file)) {
        return OptionalLong.empty();
      }
      String first = Files.readAllLines(file, StandardCharsets.US_ASCII).get(0).strip();
      return OptionalLong.of(Long.parseLong(first));
    } catch (IOException | RuntimeException e) {
      // Absent or half-written while the postmaster starts or exits.
      return OptionalLong.empty();
    }
  }

  public boolean isRunning() {
    OptionalLong pid = pid();
    return pid.isPresent() && OsUser.isRunning(pid.getAsLong());
  }

  public String serverLog() {
    try {
      return Files.exists(logFile) ? Files.readString(logFile, StandardCharsets.UTF_8) : "";
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
  }

  public String logTail(int lines) {
    List<String> all = serverLog().lines().collect(Collectors.toList());
    return String.join("\n", all.subList(Math.max(0, all.size() - lines), all.size()));
  }

  @Override
  public String toString() {
    return name + "@" + HOST + ":" + port;
  }

  // ---- used by PgCluster while it builds the cluster ----

  /**
   * Starts the server. During cluster creation another process may have grabbed the port between
   * {@link FreePorts} probing it and the postmaster binding it; then a new port is tried.
   */
  void start(boolean mayChangePort) {
    int attempts = mayChangePort ? 3 : 1;
    for (int attempt = 1; ; attempt++) {
      int logLength = serverLog().length();
      try {
        pgCtl("-l", logFile.toString(), "start");
        return;
      } catch (OsUser.CommandFailedException e) {
        String log = serverLog();
        String newLog = log.substring(Math.min(logLength, log.length()));
        boolean portTaken = newLog.contains("could not bind") || newLog.contains("in use");
        if (attempt >= attempts || !portTaken) {
          throw new IllegalStateException(
              e.getMessage() + "\n--- " + logFile + " (tail) ---\n" + logTail(60), e);
        }
        writeNodeConf(FreePorts.next());
      }
    }
  }

  void writeNodeConf(int newPort) {
    this.port = newPort;
    try {
      String conf = PgConf.node(name, newPort, replica ? cluster.primary() : null);
      Files.writeString(dataDir.resolve(PgConf.NODE_CONF), conf);
      if (replica) {
        Files.writeString(dataDir.resolve("standby.signal"), "");
      }
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
    OsUser.chown(dataDir);
  }

  private void pgCtl(String... args) {
    List<String> command = new ArrayList<>();
    command.add(binDir().resolve("pg_ctl").toString());
    command.addAll(List.of("-D", dataDir.toString(), "-w", "-t", "60"));
    Collections.addAll(command, args);
    OsUser.run(command, cluster.rootDir(), PG_CTL_TIMEOUT);
  }

  private static List<Long> processTree(long pid) {
    List<Long> all = new ArrayList<>();
    all.add(pid);
    ProcessHandle.of(pid)
        .map(ProcessHandle::descendants)
        .orElse(Stream.empty())
        .forEach(p -> all.add(p.pid()));
    return all;
  }

  private static List<List<String>> readRows(ResultSet rs) throws SQLException {
    int columns = rs.getMetaData().getColumnCount();
    List<List<String>> rows = new ArrayList<>();
    while (rs.next()) {
      List<String> row = new ArrayList<>(columns);
      for (int i = 1; i <= columns; i++) {
        row.add(rs.getString(i));
      }
      rows.add(Collections.unmodifiableList(row));
    }
    return rows;
  }

  private static void deleteQuietly(Path file) {
    try {
      Files.deleteIfExists(file);
    } catch (IOException ignored) {
      // PostgreSQL reports a stale lock file clearly enough if this ever matters.
    }
  }

  private static void sleep(long millis) {
    try {
      Thread.sleep(millis);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw new IllegalStateException("interrupted", e);
    }
  }
}
