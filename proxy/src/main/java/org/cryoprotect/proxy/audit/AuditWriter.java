package org.cryoprotect.proxy.audit;

import com.zaxxer.hikari.HikariConfig;
import com.zaxxer.hikari.HikariDataSource;
import java.io.IOException;
import java.sql.Connection;
import java.sql.PreparedStatement;
import java.sql.SQLException;
import java.sql.Statement;
import java.sql.Types;
import java.time.Instant;
import java.time.ZoneOffset;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import java.util.function.Function;
import javax.sql.DataSource;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Copies the journal into the audit table of each record's database, in batches, on its own thread
 * (DESIGN §6). A batch is one transaction per database; {@code ON CONFLICT DO NOTHING} on the
 * table's key (time, journal, seq) makes a batch written again after a crash harmless. Only when
 * every database of a batch has taken it does the checkpoint move. A database that is down stops
 * the writer, which tries again with backoff; the journal keeps what waits meanwhile. Partitions
 * are made ahead ({@code audit.create_partitions}) at the first write to a database each day, and
 * at once when a row finds none.
 */
final class AuditWriter implements AutoCloseable {
  private static final Logger log = LoggerFactory.getLogger(AuditWriter.class);
  static final int BATCH = 500;
  private static final long MAX_BACKOFF_MS = 5_000;
  private static final String NO_PARTITION = "23514";
  private static final String COLUMNS =
      "(logged_at, journal, seq, sub, jti, role, scopes, client_addr, database, statement,"
          + " parameters, duration_ms, row_count, sqlstate)";
  private static final String ROW = "(?, ?, ?, ?, ?, ?, ?, ?::inet, ?, ?, ?, ?, ?, ?)";

  private final AuditJournal journal;
  private final String table;
  private final Function<String, DataSource> connect; // database name -> where to write, or null
  private final Map<String, DataSource> targets = new HashMap<>();
  private final Map<String, Long> partitionedDay = new HashMap<>();
  private final AtomicLong written = new AtomicLong();
  private final AtomicLong unroutable = new AtomicLong();
  private volatile long oldestPendingMicros; // 0: nothing waits
  private final Thread thread;
  private volatile boolean closed;

  AuditWriter(AuditJournal journal, String table, Function<String, DataSource> connect) {
    this.journal = journal;
    this.table = table;
    this.connect = connect;
    this.thread = new Thread(this::run, "cryoproxy-audit-writer");
    thread.setDaemon(true);
  }

  AuditWriter start() {
    thread.start();
    return this;
  }

  long written() {
    return written.get();
  }

  /** Records dropped because their database is no longer configured. */
  long unroutable() {
    return unroutable.get();
  }

  /** Seconds the oldest record not yet in the database has waited; 0 when none waits. */
  double oldestPendingSeconds() {
    long micros = oldestPendingMicros;
    if (micros == 0 || journal.pendingRecords() == 0) {
      return 0;
    }
    return Math.max(0, (nowMicros() - micros) / 1e6);
  }

  private void run() {
    long backoff = 100;
    boolean failing = false;
    while (!closed) {
      try {
        List<AuditJournal.Entry> batch = journal.read(journal.checkpoint(), BATCH);
        if (batch.isEmpty()) {
          oldestPendingMicros = 0;
          journal.awaitAppend(200);
          continue;
        }
        oldestPendingMicros = batch.get(0).record().loggedAtMicros();
        write(batch);
        long bytes = batch.stream().mapToLong(AuditJournal.Entry::bytes).sum();
        journal.checkpoint(batch.get(batch.size() - 1).next(), batch.size(), bytes);
        written.addAndGet(batch.size());
        if (failing) {
          log.info("audit writer: writing again, {} records behind", journal.pendingRecords());
          failing = false;
        }
        backoff = 100;
      } catch (SQLException | IOException | RuntimeException e) {
        if (closed) {
          return;
        }
        if (!failing) {
          log.warn(
              "audit writer: cannot write ({}); {} records wait in the journal, retrying",
              e.getMessage(),
              journal.pendingRecords());
          failing = true;
        }
        sleep(backoff);
        backoff = Math.min(MAX_BACKOFF_MS, backoff * 2);
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
        return;
      }
    }
  }

  private void write(List<AuditJournal.Entry> batch) throws SQLException {
    Map<String, List<AuditRecord>> byDatabase = new LinkedHashMap<>();
    for (AuditJournal.Entry e : batch) {
      byDatabase.computeIfAbsent(e.record().database(), d -> new ArrayList<>()).add(e.record());
    }
    for (Map.Entry<String, List<AuditRecord>> group : byDatabase.entrySet()) {
      DataSource ds = target(group.getKey());
      if (ds == null) {
        log.error(
            "audit writer: database {} is no longer configured; {} records dropped",
            group.getKey(),
            group.getValue().size());
        unroutable.addAndGet(group.getValue().size());
        continue;
      }
      try (Connection c = ds.getConnection()) {
        partitions(c, group.getKey(), false);
        try {
          insert(c, group.getValue());
        } catch (SQLException e) {
          if (!NO_PARTITION.equals(e.getSQLState())) {
            throw e;
          }
          partitions(c, group.getKey(), true);
          insert(c, group.getValue());
        }
      }
    }
  }

  private DataSource target(String database) {
    return targets.computeIfAbsent(database, connect);
  }

  private void partitions(Connection c, String database, boolean now) throws SQLException {
    long day = System.currentTimeMillis() / TimeUnit.DAYS.toMillis(1);
    if (!now && partitionedDay.getOrDefault(database, -1L) == day) {
      return;
    }
    c.setAutoCommit(true);
    String schema = table.substring(0, table.indexOf('.'));
    try (Statement s = c.createStatement()) {
      s.execute("SELECT " + schema + ".create_partitions(2)");
    }
    partitionedDay.put(database, day);
  }

  private void insert(Connection c, List<AuditRecord> records) throws SQLException {
    StringBuilder sql = new StringBuilder("INSERT INTO ").append(table).append(' ').append(COLUMNS);
    sql.append(" VALUES ");
    for (int i = 0; i < records.size(); i++) {
      sql.append(i == 0 ? "" : ", ").append(ROW);
    }
    sql.append(" ON CONFLICT DO NOTHING");
    c.setAutoCommit(false);
    try (PreparedStatement ps = c.prepareStatement(sql.toString())) {
      int p = 1;
      for (AuditRecord r : records) {
        long micros = r.loggedAtMicros();
        ps.setObject(
            p++,
            Instant.ofEpochSecond(
                    Math.floorDiv(micros, 1_000_000L), Math.floorMod(micros, 1_000_000L) * 1_000L)
                .atOffset(ZoneOffset.UTC));
        ps.setString(p++, journal.id());
        ps.setLong(p++, r.seq());
        ps.setString(p++, r.sub());
        ps.setString(p++, r.jti());
        ps.setString(p++, r.role());
        if (r.scopes() == null) {
          ps.setNull(p++, Types.ARRAY);
        } else {
          ps.setArray(p++, c.createArrayOf("text", r.scopes().toArray()));
        }
        ps.setString(p++, r.clientAddr());
        ps.setString(p++, r.database());
        ps.setString(p++, r.statement());
        ps.setString(p++, r.parameters());
        ps.setDouble(p++, r.durationMs());
        if (r.rowCount() == null) {
          ps.setNull(p++, Types.BIGINT);
        } else {
          ps.setLong(p++, r.rowCount());
        }
        ps.setString(p++, r.sqlstate());
      }
      ps.executeUpdate();
      c.commit();
    } catch (SQLException e) {
      c.rollback();
      throw e;
    } finally {
      c.setAutoCommit(true);
    }
  }

  /** A small HikariCP pool (one connection) for one database's audit writes. */
  static HikariDataSource pool(DataSource login, String name) {
    HikariConfig config = new HikariConfig();
    config.setDataSource(login);
    config.setPoolName("cryoproxy-audit-" + name);
    config.setMaximumPoolSize(1);
    config.setMinimumIdle(0);
    config.setConnectionTimeout(5_000);
    config.setInitializationFailTimeout(-1);
    return new HikariDataSource(config);
  }

  private static long nowMicros() {
    Instant now = Instant.now();
    return now.getEpochSecond() * 1_000_000L + now.getNano() / 1_000;
  }

  private static void sleep(long millis) {
    try {
      Thread.sleep(millis);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
  }

  @Override
  public void close() {
    closed = true;
    thread.interrupt();
    try {
      thread.join(5_000);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
    for (DataSource ds : targets.values()) {
      if (ds instanceof HikariDataSource h) {
        h.close();
      }
    }
  }
}
