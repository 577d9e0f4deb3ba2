package org.cryoprotect.proxy.metrics;

import java.util.function.DoubleSupplier;
import java.util.function.LongSupplier;

/**
 * Where the audit trail's figures are read at scrape time: records journaled, written to the
 * database and dropped (totals); records and journal bytes waiting to be written; the age in
 * seconds of the oldest waiting record.
 */
public record AuditFigures(
    LongSupplier journaled,
    LongSupplier written,
    LongSupplier dropped,
    LongSupplier pending,
    LongSupplier journalBytes,
    DoubleSupplier oldestPendingSeconds) {

  /** No audit trail: every figure is zero. */
  public static final AuditFigures NONE =
      new AuditFigures(() -> 0, () -> 0, () -> 0, () -> 0, () -> 0, () -> 0);
}
