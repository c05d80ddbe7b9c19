from services.auth.service import AuthService

AuthService.main()
