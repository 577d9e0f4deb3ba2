package org.cryoprotect.proxy.auth;

import java.util.Optional;
import java.util.concurrent.CompletableFuture;

/**
 * Where a user's secret comes from. Always asynchronous so that the users file (answered at once)
 * and auth_query (answered on a control-plane thread) look the same to the event loop.
 */
public interface SecretSource {
  /** Empty when the user is unknown; completes exceptionally when the source itself failed. */
  CompletableFuture<Optional<Secret>> lookup(String user);
}
