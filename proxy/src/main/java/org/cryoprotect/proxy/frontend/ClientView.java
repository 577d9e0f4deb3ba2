package org.cryoprotect.proxy.frontend;

import java.util.function.IntSupplier;
import java.util.function.Supplier;
import org.cryoprotect.proxy.pool.PoolClient;
import org.cryoprotect.proxy.protocol.SqlState;

/**
 * A client session as the admin console and the pool's statistics see it, from any thread. The
 * session updates {@link #state}; the rest is read from the connection as it is.
 */
final class ClientView implements PoolClient {
  private final ClientConnection client;
  private final Supplier<String> applicationName;
  private final IntSupplier preparedStatements;
  private volatile String state = "idle";
  private volatile int serverPid;

  ClientView(
      ClientConnection client, Supplier<String> applicationName, IntSupplier preparedStatements) {
    this.client = client;
    this.applicationName = applicationName;
    this.preparedStatements = preparedStatements;
  }

  /** Set by {@link ClientSession#moveTo} only; the pid of the server connection when active. */
  void state(ClientState state, int serverPid) {
    this.state = state.label();
    this.serverPid = serverPid;
  }

  @Override
  public String state() {
    return state;
  }

  @Override
  public String address() {
    return client.address();
  }

  @Override
  public String user() {
    return client.user();
  }

  @Override
  public String database() {
    return client.database().name();
  }

  @Override
  public long connectedAtMillis() {
    return client.openedMillis();
  }

  @Override
  public String applicationName() {
    return applicationName.get();
  }

  @Override
  public boolean tls() {
    return client.tls();
  }

  @Override
  public int serverPid() {
    return serverPid;
  }

  @Override
  public int preparedStatements() {
    return preparedStatements.getAsInt();
  }

  @Override
  public void kill(String reason) {
    client.channel().eventLoop().execute(() -> client.fatal(SqlState.ADMIN_SHUTDOWN, reason));
  }
}
