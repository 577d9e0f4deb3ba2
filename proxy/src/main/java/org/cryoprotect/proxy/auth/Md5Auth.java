package org.cryoprotect.proxy.auth;

import java.nio.charset.StandardCharsets;
import java.security.GeneralSecurityException;
import java.security.MessageDigest;
import java.util.HexFormat;

/**
 * PostgreSQL's md5 password method (protocol "AuthenticationMD5Password"): the client answers "md5"
 * + hex(md5(hex(md5(password || user)) || salt)). Knowing the stored hash is enough to answer,
 * which is why the proxy can log in to a server with an md5 secret alone.
 */
public final class Md5Auth {
  private static final HexFormat HEX = HexFormat.of();

  private Md5Auth() {}

  /** The form PostgreSQL stores in pg_authid: "md5" + hex(md5(password || user)). */
  public static String hash(String password, String user) {
    return "md5" + HEX.formatHex(md5(utf8(password + user)));
  }

  /**
   * The PasswordMessage text for a 4-byte challenge salt. Returned without the NUL terminator:
   * framing is the caller's job. The string is pure ASCII.
   */
  public static String response(String md5Hash, byte[] salt) {
    if (!Secret.Md5.isHash(md5Hash)) {
      throw new IllegalArgumentException("not an md5 secret");
    }
    if (salt == null || salt.length != 4) {
      throw new IllegalArgumentException("the md5 salt is 4 bytes");
    }
    byte[] hex = md5Hash.substring(3).getBytes(StandardCharsets.US_ASCII);
    byte[] salted = new byte[hex.length + salt.length];
    System.arraycopy(hex, 0, salted, 0, hex.length);
    System.arraycopy(salt, 0, salted, hex.length, salt.length);
    return "md5" + HEX.formatHex(md5(salted));
  }

  /**
   * Checks a client's md5 answer. A SCRAM verifier cannot answer md5 (it holds no md5 hash), so it
   * yields false and the caller reports a plain authentication failure, as PostgreSQL does when it
   * cannot fall back to SCRAM.
   */
  public static boolean verify(Secret secret, String user, byte[] salt, String clientResponse) {
    if (clientResponse == null || salt == null || salt.length != 4) {
      return false;
    }
    String hash;
    if (secret instanceof Secret.Md5 m) {
      hash = m.hash();
    } else if (secret instanceof Secret.Plain p) {
      hash = hash(p.password(), user);
    } else {
      return false;
    }
    // Constant-time, so that response timing tells an attacker nothing about the expected bytes.
    return MessageDigest.isEqual(utf8(response(hash, salt)), utf8(clientResponse));
  }

  private static byte[] md5(byte[] data) {
    try {
      return MessageDigest.getInstance("MD5").digest(data);
    } catch (GeneralSecurityException e) {
      throw new IllegalStateException("the JDK must provide MD5", e);
    }
  }

  private static byte[] utf8(String s) {
    return s.getBytes(StandardCharsets.UTF_8);
  }
}
