package org.cryoprotect.proxy.backend;

import org.cryoprotect.proxy.auth.Secret;

/** What the proxy can show the server to log in as a user. */
public sealed interface ServerCredentials {
  /** Nothing: only a server that trusts the proxy accepts this. */
  record None() implements ServerCredentials {}

  record Password(String password) implements ServerCredentials {
    @Override
    public String toString() {
      return "Password[***]";
    }
  }

  /** PostgreSQL's stored md5 hash is enough to answer an md5 challenge. */
  record Md5Hash(String hash) implements ServerCredentials {
    @Override
    public String toString() {
      return "Md5Hash[***]";
    }
  }

  /**
   * SCRAM pass-through: the ClientKey recovered from the client's own proof plus the stored secret
   * let the proxy log in without ever knowing the password, as long as the server's salt and
   * iteration count match the stored secret.
   */
  record ScramKeys(byte[] clientKey, Secret.Scram secret) implements ServerCredentials {
    @Override
    public String toString() {
      return "ScramKeys[***]";
    }
  }
}
