package org.cryoprotect.proxy.backend;

import io.netty.channel.Channel;
import java.util.Collections;
import java.util.Map;
import org.cryoprotect.proxy.config.ProxyConfig.Endpoint;
import org.cryoprotect.proxy.protocol.backend.BackendKeyData;

/**
 * A logged-in connection to a PostgreSQL node. {@code parameters} are the ParameterStatus values
 * the server reported at login, in order; they are what the client is told.
 */
public final class ServerConnection {
  private final Channel channel;
  private final Endpoint node;
  private final BackendKeyData keyData;
  private final Map<String, String> parameters;

  ServerConnection(
      Channel channel, Endpoint node, BackendKeyData keyData, Map<String, String> parameters) {
    this.channel = channel;
    this.node = node;
    this.keyData = keyData;
    this.parameters = Collections.unmodifiableMap(parameters);
  }

  public Channel channel() {
    return channel;
  }

  public Endpoint node() {
    return node;
  }

  /** The server's own cancel key; never shown to the client, which gets the proxy's. */
  public BackendKeyData keyData() {
    return keyData;
  }

  public Map<String, String> parameters() {
    return parameters;
  }

  public void close() {
    channel.close();
  }
}
