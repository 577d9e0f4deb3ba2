package org.cryoprotect.proxy.health;

import java.time.Duration;
import java.time.Instant;
import java.util.Locale;
import org.cryoprotect.proxy.config.ProxyConfig.Endpoint;

/**
 * The latest probe of one node of one database, immutable. {@code role} is the configured one;
 * {@code inRecovery} is what the server said ({@code pg_is_in_recovery()}), so a replica promoted
 * by an external tool shows up as a replica that is not in recovery.
 *
 * <p>{@code lsn} is the primary's {@code pg_current_wal_lsn()} or the replica's {@code
 * pg_last_wal_replay_lsn()}, as a 64-bit WAL position; 0 (PostgreSQL's InvalidXLogRecPtr) when
 * unknown. Lag is 0 on a node that is not in recovery. {@code error} says why the probe failed and
 * is null when {@code up}; {@code reason} says it in a few words that reveal nothing of the server
 * (for {@code /health/ready}, which anyone who reaches the admin port may read; the full text goes
 * to the log). {@code checkedAt} is null until the first probe has finished.
 */
public record NodeHealth(
    String database,
    Endpoint node,
    Role role,
    boolean up,
    boolean inRecovery,
    double lagSeconds,
    long lagBytes,
    long lsn,
    String error,
    String reason,
    Instant checkedAt) {
  private static final long WAL_PAGE = 8192;
  private static final long PAGE_HEADER = 24;

  public enum Role {
    PRIMARY,
    REPLICA;

    /** {@code primary} or {@code replica}, as in metric labels and the readiness JSON. */
    public String label() {
      return name().toLowerCase(Locale.ROOT);
    }
  }

  /** Before the first probe: down, so that readiness is not claimed before anything was checked. */
  static NodeHealth notProbed(String database, Endpoint node, Role role) {
    return new NodeHealth(
        database, node, role, false, false, 0, 0, 0, "not probed yet", "not probed yet", null);
  }

  static NodeHealth down(
      String database, Endpoint node, Role role, String error, String reason, Instant at) {
    return new NodeHealth(database, node, role, false, false, 0, 0, 0, error, reason, at);
  }

  /**
   * A successful probe. {@code receiveLsn} is {@code pg_last_wal_receive_lsn()} (0 if NULL) and
   * {@code replayAgeSeconds} is {@code now() - pg_last_xact_replay_timestamp()} (null if NULL);
   * both are ignored on a node that is not in recovery.
   *
   * <p>Time lag measured from the last replayed commit grows without bound while the primary is
   * idle, although the replica has nothing to replay. So a replica that has replayed everything it
   * received has lag 0; this also covers a new replica that has not replayed any transaction yet
   * (NULL timestamp). Without streaming (receive position NULL) the age is all there is.
   *
   * <p>A probe that lands between the arrival of a record and its replay (an idle primary still
   * writes background WAL: checkpoints, running-transaction snapshots) would report the age of the
   * last commit, which on an idle primary is minutes, and take the replica out of routing. So when
   * the replica has replayed everything it had received at the previous probe ({@code
   * receivedBefore} at {@code before}) and no commit since ({@code commitBefore}, the time of the
   * last replayed commit then, is still the last one), there was nothing to be behind on: what is
   * left arrived since then, and the lag is at most that long. A replica that keeps replaying
   * commits that arrive late (slow transport from a busy primary) keeps the age of the latest.
   */
  static NodeHealth observed(
      String database,
      Endpoint node,
      Role role,
      boolean inRecovery,
      long lsn,
      long receiveLsn,
      Double replayAgeSeconds,
      Instant at,
      long receivedBefore,
      Instant commitBefore,
      Instant before) {
    double lagSeconds = 0;
    long lagBytes = 0;
    if (inRecovery) {
      lagBytes = receiveLsn == 0 ? 0 : Math.max(0, receiveLsn - lsn);
      boolean caughtUp = receiveLsn != 0 && lagBytes == 0;
      if (!caughtUp && replayAgeSeconds != null) {
        lagSeconds = Math.max(0, replayAgeSeconds);
        boolean keepingUp = before != null && receivedBefore != 0 && lsn >= receivedBefore;
        boolean noCommitSince =
            commitBefore != null
                && Math.abs(
                        Duration.between(commitBefore, commitTime(at, replayAgeSeconds)).toMillis())
                    < SAME_COMMIT_MILLIS;
        if (keepingUp && noCommitSince) {
          double sinceBefore = Math.max(0, Duration.between(before, at).toNanos() / 1e9);
          lagSeconds = Math.min(lagSeconds, sinceBefore);
        }
      }
    }
    return new NodeHealth(
        database, node, role, true, inRecovery, lagSeconds, lagBytes, lsn, null, null, at);
  }

  // The commit time is the probe's time minus an age measured on the server: two probes of the
  // same commit differ by the probes' round trips, far below this.
  private static final long SAME_COMMIT_MILLIS = 250;

  /** When the last replayed commit happened, from a probe at {@code at} that found it that old. */
  static Instant commitTime(Instant at, double ageSeconds) {
    return at.minusNanos((long) (ageSeconds * 1e9));
  }

  /** {@code 16/B374D848} as a 64-bit WAL position; null (SQL NULL) is 0. */
  public static long parseLsn(String text) {
    if (text == null) {
      return 0;
    }
    int slash = text.indexOf('/');
    if (slash < 0) {
      throw new IllegalArgumentException("not a pg_lsn: " + text);
    }
    long high = Long.parseLong(text.substring(0, slash), 16);
    long low = Long.parseLong(text.substring(slash + 1), 16);
    return (high << 32) | low;
  }

  /**
   * {@code pg_current_wal_insert_lsn()} right after a page boundary points past the new page's
   * 24-byte header, where no record can end; a replica that replayed everything before the boundary
   * reports the boundary itself, and would wait for the next write to pass it. Both mean the same
   * point of the log, so the boundary is what a replica must reach. (A segment's first page has a
   * 40-byte header; offset 40 is left alone, as on other pages a record can end there.)
   */
  public static long recordEnd(long insertLsn) {
    return insertLsn % WAL_PAGE == PAGE_HEADER ? insertLsn - PAGE_HEADER : insertLsn;
  }

  /** Whether the node answered and is what the configuration says it is. */
  public boolean usable() {
    return up && inRecovery == (role == Role.REPLICA);
  }

  /** Why the node is not usable in its configured role, or {@code ""}. */
  public String detail() {
    return up ? roleDetail() : error;
  }

  /** {@link #detail()} with the probe's error reduced to its {@link #reason}. */
  public String publicDetail() {
    return up ? roleDetail() : reason;
  }

  private String roleDetail() {
    if (role == Role.PRIMARY && inRecovery) {
      return "in recovery: a standby, cannot take writes";
    }
    if (role == Role.REPLICA && !inRecovery) {
      return "not in recovery: promoted, no longer a replica";
    }
    return "";
  }
}
