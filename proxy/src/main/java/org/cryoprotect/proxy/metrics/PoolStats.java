package org.cryoprotect.proxy.metrics;

/**
 * One pool at one instant, in PgBouncer's {@code SHOW POOLS} vocabulary: clients active (linked to
 * a server connection), waiting (for one) and idle; server connections active (linked to a client),
 * active with a cancel on its way, being canceled (given back, lent to nobody until the cancel
 * landed), idle (ready for reuse), used (idle past {@code server_check_delay}: checked before
 * reuse), tested (running the proxy's check, settings or reset query) and logging in. {@code
 * poolSize} is the configured maximum of server connections; {@code maxWaitMicros} is how long the
 * oldest waiting client has waited.
 */
public record PoolStats(
    String database,
    String user,
    String node,
    int clActive,
    int clWaiting,
    int clIdle,
    int svActive,
    int svActiveCancel,
    int svBeingCanceled,
    int svIdle,
    int svUsed,
    int svTested,
    int svLogin,
    int poolSize,
    long maxWaitMicros) {

  /** Server connections not in the idle list: lent to a client, under a check, or canceling. */
  public int svBusy() {
    return svActive + svActiveCancel + svTested + svBeingCanceled;
  }
}
