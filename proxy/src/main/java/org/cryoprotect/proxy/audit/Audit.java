package org.cryoprotect.proxy.audit;

import java.io.IOException;
import java.util.Set;
import java.util.concurrent.atomic.AtomicLong;
import java.util.function.Consumer;
import java.util.function.Function;
import javax.sql.DataSource;
import org.cryoprotect.proxy.config.ProxyConfig;
import org.cryoprotect.proxy.config.ProxyConfig.OnFull;
import org.cryoprotect.proxy.metrics.AuditFigures;
import org.cryoprotect.proxy.metrics.ProxyMetrics;

/**
 * The audit trail of the service roles (DESIGN §6): which sessions are audited, and the journal and
 * writer their records go through. {@link #off()} when {@code audit} is not configured. The
 * configuration is read at start; changing it needs a restart.
 */
public final class Audit implements AutoCloseable {
  private final Set<String> roles;
  private final OnFull onFull;
  private final boolean parameters;
  private final AuditJournal journal; // null when off
  private final AuditWriter writer;
  private final AtomicLong dropped = new AtomicLong();

  private Audit(
      Set<String> roles,
      OnFull onFull,
      boolean parameters,
      AuditJournal journal,
      AuditWriter writer) {
    this.parameters = parameters;
    this.roles = roles;
    this.onFull = onFull;
    this.journal = journal;
    this.writer = writer;
  }

  public static Audit off() {
    return new Audit(Set.of(), OnFull.BLOCK, false, null, null);
  }

  /**
   * Opens the journal and starts the writer. {@code login} gives, for a database name, the login to
   * write its records with (null for a database no longer configured).
   */
  public static Audit start(
      ProxyConfig.Audit config, Function<String, DataSource> login, ProxyMetrics metrics)
      throws IOException {
    AuditJournal journal = AuditJournal.open(config.journalDir(), config.maxJournalBytes());
    AuditWriter writer =
        new AuditWriter(
            journal,
            config.table(),
            name -> {
              DataSource ds = login.apply(name);
              return ds == null ? null : AuditWriter.pool(ds, name);
            });
    Audit audit =
        new Audit(
            Set.copyOf(config.roles()), config.onFull(), config.parameters(), journal, writer);
    metrics.registerAudit(
        new AuditFigures(
            journal::journaled,
            writer::written,
            () -> audit.dropped.get() + writer.unroutable(),
            journal::pendingRecords,
            journal::pendingBytes,
            writer::oldestPendingSeconds));
    writer.start();
    return audit;
  }

  /** Whether a session logged in as {@code role} is audited. */
  public boolean audits(String role) {
    return journal != null && roles.contains(role);
  }

  /** Whether records carry the values a Bind gave the statement ({@code audit.parameters}). */
  public boolean recordsParameters() {
    return parameters;
  }

  /** Audited work is refused now: the journal is full and {@code on_full} is block. */
  public boolean refusing() {
    return journal != null && onFull == OnFull.BLOCK && journal.full();
  }

  /**
   * Journals {@code record}; {@code done} runs (on the journal's thread, or here) with null once
   * the statement's completion may reach the client, else with why it may not. With {@code on_full:
   * drop} a full journal drops the record, counts it, and lets the statement complete.
   */
  public void record(AuditRecord record, Consumer<Throwable> done) {
    if (journal.full()) {
      if (onFull == OnFull.DROP) {
        dropped.incrementAndGet();
        done.accept(null);
      } else {
        done.accept(new IOException("the audit journal is full"));
      }
      return;
    }
    journal.append(record, done);
  }

  @Override
  public void close() {
    if (writer != null) {
      writer.close();
    }
    if (journal != null) {
      journal.close();
    }
  }
}
