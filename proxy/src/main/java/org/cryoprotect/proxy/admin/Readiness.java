package org.cryoprotect.proxy.admin;

import java.util.List;

/**
 * What {@code /health/ready} reports. Called on an admin HTTP thread for every request, so an
 * implementation should return the latest probe results it already has rather than probe now.
 */
@FunctionalInterface
public interface Readiness {
  Status status();

  /** {@code ready} decides 200 or 503; {@code nodes} is the detail in the JSON body. */
  record Status(boolean ready, List<NodeStatus> nodes) {
    public Status {
      nodes = List.copyOf(nodes);
    }
  }

  /**
   * One node as the probes last saw it. {@code role} is {@code primary} or {@code replica}; {@code
   * detail} says why it is down (or is empty).
   */
  record NodeStatus(String database, String node, String role, boolean up, String detail) {}
}
