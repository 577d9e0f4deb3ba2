package org.cryoprotect.proxy.pool;

import org.cryoprotect.proxy.config.ProxyConfig.Endpoint;

/** Server connections are interchangeable only within one node, database and login role. */
public record PoolKey(Endpoint node, String database, String role) {
  @Override
  public String toString() {
    return database + "/" + role + "@" + node;
  }
}
