package org.cryoprotect.proxy.auth;

import com.ongres.scram.common.StringPreparation;
import java.nio.charset.StandardCharsets;
import java.security.GeneralSecurityException;
import java.security.MessageDigest;
import java.util.Arrays;
import javax.crypto.Mac;
import javax.crypto.SecretKeyFactory;
import javax.crypto.spec.PBEKeySpec;
import javax.crypto.spec.SecretKeySpec;

/** The SCRAM-SHA-256 functions of RFC 5802 section 3, shared by the server and the login side. */
final class ScramCrypto {
  static final int KEY_LENGTH = 32;

  private ScramCrypto() {}

  static byte[] hmac(byte[] key, byte[] data) {
    try {
      Mac mac = Mac.getInstance("HmacSHA256");
      mac.init(new SecretKeySpec(key, "HmacSHA256"));
      return mac.doFinal(data);
    } catch (GeneralSecurityException e) {
      throw new IllegalStateException("the JDK must provide HmacSHA256", e);
    }
  }

  static byte[] hmac(byte[] key, String data) {
    return hmac(key, data.getBytes(StandardCharsets.UTF_8));
  }

  static byte[] sha256(byte[] data) {
    try {
      return MessageDigest.getInstance("SHA-256").digest(data);
    } catch (GeneralSecurityException e) {
      throw new IllegalStateException("the JDK must provide SHA-256", e);
    }
  }

  static byte[] xor(byte[] a, byte[] b) {
    byte[] out = new byte[a.length];
    for (int i = 0; i < a.length; i++) {
      out[i] = (byte) (a[i] ^ b[i]);
    }
    return out;
  }

  /**
   * Hi(Normalize(password), salt, i). Normalize is SASLprep with PostgreSQL's fallback to the raw
   * password when SASLprep rejects it (pg_be_scram_build_secret), so that a secret derived here
   * matches what PostgreSQL, libpq and pgJDBC derive for the same non-ASCII password.
   */
  static byte[] saltedPassword(String password, byte[] salt, int iterations) {
    char[] prepared =
        password.isEmpty()
            ? new char[0]
            : StringPreparation.POSTGRESQL_PREPARATION.normalize(password.toCharArray());
    PBEKeySpec spec = new PBEKeySpec(prepared, salt, iterations, KEY_LENGTH * 8);
    try {
      return SecretKeyFactory.getInstance("PBKDF2WithHmacSHA256").generateSecret(spec).getEncoded();
    } catch (GeneralSecurityException e) {
      throw new IllegalStateException("the JDK must provide PBKDF2WithHmacSHA256", e);
    } finally {
      spec.clearPassword();
      Arrays.fill(prepared, '\0');
    }
  }
}
