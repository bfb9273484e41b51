// The password policy of API.md §3.3, after NIST SP 800-63B §3.1.1.2: a length range checked
// by the schema, no composition rules, and a check against passwords known to be common and
// against the account's own email and name. Applied to the NFKC form of the password (the
// form that is hashed), so visually equal variants cannot slip past.
import { dictionary } from '@zxcvbn-ts/language-common'

// ~49,000 passwords most often seen in breaches (the zxcvbn dictionary), loaded once.
const COMMON_PASSWORDS: ReadonlySet<string> = new Set(dictionary['passwords-common'].map((p) => String(p).toLowerCase()))

// Shorter fragments are too common inside strong passwords to refuse them.
const MIN_CONTAINED_LENGTH = 4

export type PasswordProblem = 'common' | 'contains_personal_data'

export function normalizePassword (password: string): string {
  return password.normalize('NFKC')
}

/** Why the password is refused, or null when it is acceptable. `email` is normalised. */
export function passwordProblem (password: string, account: { email: string, name: string }): PasswordProblem | null {
  const candidate = normalizePassword(password).toLowerCase()
  if (COMMON_PASSWORDS.has(candidate) || COMMON_PASSWORDS.has(candidate.trim())) return 'common'

  const email = account.email.toLowerCase()
  const name = account.name.normalize('NFKC').toLowerCase().trim()
  const personal = [email, email.slice(0, email.lastIndexOf('@')), name, ...name.split(/\s+/)]
    .filter((part) => part !== '')
  for (const part of personal) {
    if (candidate.trim() === part) return 'contains_personal_data'
    if ([...part].length >= MIN_CONTAINED_LENGTH && candidate.includes(part)) return 'contains_personal_data'
  }
  return null
}
