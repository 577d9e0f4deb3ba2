package org.cryoprotect.proxy.pool;

/** A client as the admin console and metrics see it; every method is safe from any thread. */
public interface PoolClient {
  /** "active" (holds a server connection), "waiting" (for one) or "idle". */
  String state();

  String address();

  String user();

  String database();

  /** Wall-clock milliseconds of login. */
  long connectedAtMillis();

  String applicationName();

  boolean tls();

  /** The server backend pid the client holds now, or 0. */
  int serverPid();

  int preparedStatements();

  /** Ends the client's session (KILL, SHUTDOWN). */
  void kill(String reason);
}
